//go:build !linux

package turnstiletest

import (
	"io"
	"net"
)

func listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// holdPort cannot keep the port here: ModeRefuse just closes the listener.
func holdPort(string) io.Closer { return nil }
