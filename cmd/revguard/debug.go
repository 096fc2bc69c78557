package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"sync"
)

// Sampling of the mutex and block profiles while one of them is being taken: one in
// mutexFraction contention events, and one blocking event per blockRate nanoseconds
// spent blocked. Both cost every lock and channel operation something (3 % of the
// server's CPU under a load of reservations, measured), so they are off until asked
// for (sampling).
const (
	mutexFraction = 100
	blockRate     = 10_000
)

// How long a block or mutex profile samples: 30 seconds when the request does not say
// (?seconds=N), as for the CPU profile, and at most maxProfileSeconds, so that a
// mistyped request cannot leave the sampling on for good.
const (
	defaultProfileSeconds = "30"
	maxProfileSeconds     = 600
)

// serveDebug serves the runtime's profiles on addr, apart from the API, so that an
// operator can profile the real binary under load:
//
//	go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=10
//	go tool pprof http://127.0.0.1:6060/debug/pprof/block?seconds=10
//
// Goroutine: Serve runs until Close closes m.debug.
func (m *Main) serveDebug(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/pprof/block", samplingHandler("block"))
	mux.Handle("/debug/pprof/mutex", samplingHandler("mutex"))
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: listen on --debug-addr %s: %w", addr, err)
	}
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

// sampling turns the runtime's block and mutex sampling on while at least one request
// for either profile runs, and off after the last. It is the process's, as the
// runtime's sampling is.
var sampling struct {
	mu      sync.Mutex
	running int
}

// samplingHandler serves the named profile (block or mutex) as the difference over the
// request's ?seconds=N (30 when not given, at most maxProfileSeconds), with the
// sampling on meanwhile: a cumulative profile would hold only what earlier requests
// sampled. A request for the text form (?debug=1, the links of /debug/pprof/) without
// seconds gets that cumulative profile at once, as net/http/pprof serves it.
func samplingHandler(name string) http.Handler {
	h := pprof.Handler(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch sec := q.Get("seconds"); {
		case sec == "" && (q.Get("debug") == "" || q.Get("debug") == "0"):
			q.Set("seconds", defaultProfileSeconds)
			r = r.Clone(r.Context())
			r.URL.RawQuery = q.Encode()
		case sec == "":
			h.ServeHTTP(w, r)
			return
		default:
			if n, err := strconv.ParseInt(sec, 10, 64); err == nil && n > maxProfileSeconds {
				http.Error(w, fmt.Sprintf("seconds: at most %d", maxProfileSeconds), http.StatusBadRequest)
				return
			}
		}
		startSampling()
		defer stopSampling()
		h.ServeHTTP(w, r)
	})
}

// startSampling turns the block sampling on first: a caller that sees the mutex
// fraction set finds both on.
func startSampling() {
	sampling.mu.Lock()
	defer sampling.mu.Unlock()
	if sampling.running++; sampling.running == 1 {
		runtime.SetBlockProfileRate(blockRate)
		runtime.SetMutexProfileFraction(mutexFraction)
	}
}

func stopSampling() {
	sampling.mu.Lock()
	defer sampling.mu.Unlock()
	if sampling.running--; sampling.running == 0 {
		runtime.SetMutexProfileFraction(0)
		runtime.SetBlockProfileRate(0)
	}
}
