package turnstiletest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"syscall"
	"time"
)

// Mode is how the fake answers.
type Mode int

// The modes of the fake verifier.
const (
	// ModeUp answers every request as Cloudflare would.
	ModeUp Mode = iota
	// ModeRefuse closes the listener and every connection: clients get "connection
	// refused". Switching to another mode listens again on the same address.
	ModeRefuse
	// ModeDrop accepts each request and closes the connection without an answer.
	ModeDrop
	// ModeError answers HTTP 500 with a text body.
	ModeError
	// ModeInternalError answers 200 {"success": false, "error-codes": ["internal-error"]}.
	ModeInternalError
	// ModeHang never answers: the request waits until the client gives up or the fake
	// is closed.
	ModeHang
	// ModeDropAnswer verifies the request (spending the token) and then closes the
	// connection without sending the answer: the lost answer that idempotency keys are
	// for.
	ModeDropAnswer
)

// String names m.
func (m Mode) String() string {
	switch m {
	case ModeUp:
		return "up"
	case ModeRefuse:
		return "refuse"
	case ModeDrop:
		return "drop"
	case ModeError:
		return "error"
	case ModeInternalError:
		return "internal-error"
	case ModeHang:
		return "hang"
	case ModeDropAnswer:
		return "drop-answer"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// listener is the fake's network side.
type listener struct {
	mu     sync.Mutex // never held together with Server.mu
	addr   string     // 127.0.0.1:port once started
	srv    *http.Server
	hold   io.Closer // in ModeRefuse: a socket bound to addr, not listening
	closed bool
	wg     sync.WaitGroup // Serve goroutines
}

// Start serves the fake on a fresh port of 127.0.0.1. Call Close when done.
func (s *Server) Start() error {
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("turnstiletest: listen: %w", err)
	}
	l := &s.net
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addr != "" || l.closed {
		ln.Close()
		return errors.New("turnstiletest: already started")
	}
	l.addr = ln.Addr().String()
	s.serve(ln)
	return nil
}

// serve starts an http.Server on ln. Called with s.net.mu held.
func (s *Server) serve(ln net.Listener) {
	l := &s.net
	l.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	l.wg.Add(1)
	// Started by Start or SetMode; returns when Close or SetMode(ModeRefuse) closes srv.
	go func(srv *http.Server) {
		defer l.wg.Done()
		srv.Serve(ln)
	}(l.srv)
}

// URL is the siteverify URL of a started fake (http://127.0.0.1:port/turnstile/v0/siteverify).
func (s *Server) URL() string {
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	return "http://" + s.net.addr + Path
}

// Close stops the fake: hanging requests return, the listener and every connection
// close, and Close waits for the serving goroutines. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.mu.Unlock()
	l := &s.net
	l.mu.Lock()
	l.closed = true
	l.release()
	if l.srv != nil {
		l.srv.Close()
		l.srv = nil
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// release closes the socket that holds the port in ModeRefuse, if any. Called with
// l.mu held.
func (l *listener) release() {
	if l.hold != nil {
		l.hold.Close()
		l.hold = nil
	}
}

// SetMode sets how the fake answers from now on. Leaving ModeRefuse listens again on the
// same address, which fails only if another process took the port in between.
func (s *Server) SetMode(m Mode) error {
	s.mu.Lock()
	s.mode, s.remaining = m, -1
	s.mu.Unlock()

	l := &s.net
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addr == "" || l.closed {
		return nil // not listening: the mode applies to the handler and Client only
	}
	switch {
	case m == ModeRefuse && l.srv != nil:
		// Keep the port: bind a socket to it before the listener goes (both share it),
		// so no other process can take the port before we listen again. Bound but not
		// listening, it refuses connections.
		l.hold = holdPort(l.addr)
		l.srv.Close() // closes the listener and every connection, idle or active
		l.srv = nil
	case m != ModeRefuse && l.srv == nil:
		ln, err := listen(l.addr) // while the holding socket still keeps the port
		l.release()
		if err != nil {
			return fmt.Errorf("turnstiletest: listen again on %s: %w", l.addr, err)
		}
		s.serve(ln)
	}
	return nil
}

// FailNext answers the next n requests in mode m, then returns to ModeUp. ModeRefuse
// cannot be counted per request and acts as ModeDrop here.
func (s *Server) FailNext(n int, m Mode) {
	if m == ModeRefuse {
		m = ModeDrop
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		s.mode, s.remaining = ModeUp, -1
		return
	}
	s.mode, s.remaining = m, n
}

// Mode reports the current mode.
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// takeMode returns the mode for one request and counts it against FailNext.
func (s *Server) takeMode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mode
	if s.remaining > 0 {
		s.remaining--
		if s.remaining == 0 {
			s.mode, s.remaining = ModeUp, -1
		}
	}
	return m
}

// Client returns an http.Client that calls the fake in process, without a socket: the
// cheapest way to put a verifier behind a BotChecker in benchmarks and load tests. The
// modes behave as over the network (ModeRefuse fails with ECONNREFUSED).
func (s *Server) Client() *http.Client {
	return &http.Client{Transport: inProcess{s}}
}

type inProcess struct{ s *Server }

// RoundTrip runs the handler on the calling goroutine.
func (t inProcess) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if t.s.Mode() == ModeRefuse {
		return nil, &net.OpError{Op: "dial", Net: "tcp",
			Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	r := req.Clone(req.Context())
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RequestURI = req.URL.RequestURI()
	rec := httptest.NewRecorder()
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			resp, err = nil, errors.New("turnstiletest: connection closed without an answer")
		}
	}()
	t.s.ServeHTTP(rec, r)
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	return rec.Result(), nil
}
