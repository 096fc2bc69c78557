package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
)

// Sampling of the mutex and block profiles while --debug-addr is set: one in
// mutexFraction contention events, and one blocking event per blockRate nanoseconds
// spent blocked. Both cost a little on every lock and channel operation, so they are
// on only when profiles are served.
const (
	mutexFraction = 100
	blockRate     = 10_000
)

// serveDebug serves the runtime's profiles on addr, apart from the API, so that an
// operator can profile the real binary under load:
//
//	go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=10
//
// Goroutine: Serve runs until Close closes m.debug.
func (m *Main) serveDebug(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: listen on --debug-addr %s: %w", addr, err)
	}
	runtime.SetMutexProfileFraction(mutexFraction)
	runtime.SetBlockProfileRate(blockRate)
	m.debug = &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	m.debugAddr = ln.Addr()
	go func() {
		if err := m.debug.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("debug listener failed", "err", err)
		}
	}()
	m.Logger.Info("serving profiles", "addr", ln.Addr().String())
	return nil
}

// DebugAddr returns the address of the profiles' listener; nil when it is off.
func (m *Main) DebugAddr() net.Addr { return m.debugAddr }
