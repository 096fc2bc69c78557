package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi/internal/urlpath"
)

// maxRequestIDLen bounds an X-Request-Id the server echoes.
const maxRequestIDLen = 128

// serveHTTP wraps every request served through Handler: it assigns the request id
// (requestID) and serves the request with it (serveWithID).
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	id := s.requestID(r.Header)
	s.serveWithID(w, r.WithContext(revguard.WithRequestID(r.Context(), id)), id)
}

// requestID returns a request's id: the client's X-Request-Id when it is of sane
// form, else one of the server's own.
func (s *Server) requestID(h http.Header) string {
	if id := h.Get("X-Request-Id"); validRequestID(id) {
		return id
	}
	return s.newRequestID()
}

// serveWithID serves r, whose context carries its request id: it sets the id's
// headers, turns a panic into a logged 500, records the route's metrics and, at debug
// level, writes an access log line. HTTPServer calls it with a request it built with
// the id in its context, which saves the copy of the request that WithContext makes.
func (s *Server) serveWithID(w http.ResponseWriter, r *http.Request, id string) {
	start := time.Now()
	setIDHeaders(w.Header(), id)
	// HTTPServer's writers record their status themselves; net/http's is wrapped.
	rw, ok := w.(statusWriter)
	if !ok {
		rw = &responseWriter{ResponseWriter: w}
	}
	defer func() {
		v := recover()
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.finishRequest(rw, r, id, start, v)
	}()
	if !urlpath.Canonical(r.URL.Path) {
		// The mux would redirect to the cleaned path in text/plain. A SKU id that is
		// empty, "." or ".." is an invalid SKU id (docs/api.md) where the path is
		// otherwise a SKU's: the route serves it with a stand-in that routes, and
		// skuID refuses the id itself, after the route's checks before it (its
		// token). Any other path with dot segments or empty segments is no endpoint:
		// the not-found problem.
		if sr, ok := dotSKURequest(r); ok {
			s.mux.ServeHTTP(rw, sr)
			r.Pattern = sr.Pattern // the route's metrics (finishRequest)
			return
		}
		if !s.limitUnserved(rw, r) {
			detail := "no such endpoint: the path has empty or dot segments"
			if !strings.HasPrefix(r.URL.Path, "/") { // OPTIONS *, say
				detail = "no such endpoint"
			}
			s.writeProblem(rw, r, revguard.CodeNotFound, detail)
		}
		return
	}
	s.mux.ServeHTTP(rw, r)
}

// finishRequest ends a request served with id since start: a panic v (nil if none) is
// logged and answered with the internal problem when nothing was sent yet; the
// route's metrics are recorded and, at debug level, an access log line written.
func (s *Server) finishRequest(rw statusWriter, r *http.Request, id string, start time.Time, v any) {
	if v != nil {
		s.Logger.LogAttrs(r.Context(), slog.LevelError, "httpapi: panic serving request",
			slog.String("request_id", id), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Any("panic", v),
			slog.String("stack", string(debug.Stack())))
		if rw.Status() == 0 {
			s.writeProblem(rw, r, revguard.CodeInternal, "")
		}
	}
	status := rw.Status()
	if status == 0 {
		status = http.StatusOK // a handler that wrote nothing
	}
	elapsed := time.Since(start)
	s.metrics.observeRequest(r.Pattern, status, elapsed)
	if s.Logger.Enabled(r.Context(), slog.LevelDebug) {
		s.Logger.LogAttrs(r.Context(), slog.LevelDebug, "httpapi: request",
			slog.String("request_id", id), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.String("route", r.Pattern),
			slog.Int("status", status), slog.Duration("duration", elapsed),
			slog.String("remote", r.RemoteAddr))
	}
}

// setIDHeaders sets the headers every answer carries: its request id, and nosniff.
func setIDHeaders(h http.Header, id string) {
	h["X-Request-Id"] = []string{id}
	h["X-Content-Type-Options"] = noSniff
}

// newRequestID returns a request id of the server's own: its random prefix and a
// counter.
func (s *Server) newRequestID() string {
	var buf [48]byte
	return string(strconv.AppendUint(append(buf[:0], s.idPrefix...), s.idSeq.Add(1), 10))
}

// dotSKU carries, in a request's context, the SKU id of a path whose SKU segment is
// empty, "." or "..": skuID refuses it.
type dotSKU struct{}

// dotSKURequest returns r for the mux with a stand-in for its SKU segment when r's
// path is a SKU's route for an empty, "." or ".." SKU id (urlpath.DotSKU); the id
// itself is in the context (dotSKU).
func dotSKURequest(r *http.Request) (*http.Request, bool) {
	standIn, id, ok := urlpath.DotSKU(r.URL.Path)
	if !ok {
		return nil, false
	}
	u := *r.URL
	u.Path, u.RawPath = standIn, ""
	sr := r.WithContext(context.WithValue(r.Context(), dotSKU{}, id))
	sr.URL = &u
	return sr, true
}

// validRequestID reports whether a client's X-Request-Id is of sane form, safe to echo
// and log: 1 to 128 characters from [A-Za-z0-9._:+/=@-]. That covers the usual ids
// (UUIDs, ULIDs, hex and base64 or base64url strings such as proxies and platforms
// generate) and excludes spaces, quotes, angle brackets, control characters and
// anything outside ASCII.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-', c == '+', c == '/', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}

// statusWriter is an http.ResponseWriter that reports the first final status sent
// through it (an implicit 200 on the first Write), 0 while none was.
type statusWriter interface {
	http.ResponseWriter
	Status() int
}

// responseWriter records the status a handler sent through a writer that does not
// (net/http's).
type responseWriter struct {
	http.ResponseWriter
	status  int
	counted bool // ipCounter
}

// WriteHeader records the first final status.
func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *responseWriter) Status() int { return w.status }

func (w *responseWriter) ipCounted() *bool { return &w.counted }

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
