//go:build !unix

package turnstiletest

import "io"

// holdPort cannot keep the port here: ModeRefuse just closes the listener.
func holdPort(string) io.Closer { return nil }
