//go:build linux

package turnstiletest

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The fake's listener and the socket that holds its port in ModeRefuse both set
// SO_REUSEPORT, so each can be bound while the other still is: the port is never free
// for another process (an outgoing connection's ephemeral port, say) in between.

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		if serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// listen listens on addr, sharing the port with a holding socket.
func listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: reusePort}
	return lc.Listen(context.Background(), "tcp", addr)
}

// holdPort binds a TCP socket to addr without listening on it: once the listener is
// closed, connections to addr are refused (RST), and the port stays ours. It returns nil
// when it cannot.
func holdPort(addr string) io.Closer {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) != nil ||
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1) != nil ||
		syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}) != nil {
		syscall.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "turnstiletest-hold")
}
