//go:build unix

package turnstiletest

import (
	"io"
	"net/netip"
	"os"
	"syscall"
)

// holdPort binds a TCP socket to addr without listening on it: connections to addr are
// then refused (RST), and the port stays ours. It returns nil when it cannot, and the
// port is merely free again.
func holdPort(addr string) io.Closer {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	// SO_REUSEADDR: the closed listener's connections may linger in TIME_WAIT.
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) != nil ||
		syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}) != nil {
		syscall.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "turnstiletest-hold")
}
