package httpapi

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/revenueguard/revguard"
)

// DefaultMaxHeaderBytes bounds a request's line and header fields (HTTPConfig).
const DefaultMaxHeaderBytes = 16 << 10

// HTTPConfig are the limits of an HTTPServer.
type HTTPConfig struct {
	// ReadTimeout bounds the reading of one request, line, header and body (0: none).
	ReadTimeout time.Duration
	// WriteTimeout bounds the writing of one answer (0: none); an event stream sets
	// its own deadline for each write.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive connection
	// (0: ReadTimeout).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and header fields; a request over it
	// gets 431 header_too_large. 0: DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// BaseContext is the parent of every request's context (nil: Background).
	// An event stream's context also ends when its client disconnects; the other
	// requests' contexts do not (their handlers answer without waiting on a client).
	BaseContext context.Context
	// ErrorLog receives, at debug level, the unreadable requests and fasthttp's
	// connection errors (nil: the Server's Logger). Neither carries header values.
	ErrorLog *slog.Logger
	// MaxConns bounds the open connections, event streams included (0: no bound). A
	// connection over it is answered 503 unavailable with Retry-After at once and
	// closed, so that a flood of connections cannot take every file descriptor.
	MaxConns int
}

// HTTPServer serves the API over HTTP/1.1 on fasthttp's connection handling, which
// costs a request less CPU than net/http's, in particular one whose handler waits
// for a group commit (net/http then starts a background read on the connection,
// parks it in the poller and wakes it again once the answer is ready). The handlers
// stay net/http handlers: each request is converted into an *http.Request whose
// strings and body are copies (the handlers may keep them, in a reservation or a
// subscription, after fasthttp reuses its buffers) and answered through an
// http.ResponseWriter on the same goroutine. The *http.Request itself, its header map,
// URL and body reader are reused for a later request once the handler has returned:
// a handler keeps none of them past its return (no handler starts a goroutine with
// its request).
//
// The event streams (the admin events, the dashboard, a waiting-room place) are the
// exception: their connection is hijacked once the request is read and the handler
// writes the answer to it directly, flushing each event, until it returns or the
// client disconnects (which ends the request's context).
//
// A request that cannot be read as HTTP/1.x gets a problem document, 400
// invalid_request, 413 body_too_large (over MaxBodyBytes) or 431 header_too_large,
// and the connection is closed after it. A request that does not arrive within the
// read timeout (or a connection that never sends one) is closed without an answer, as
// net/http does: a client that opened a connection ahead of time must not read a
// stale error as the answer to its request.
type HTTPServer struct {
	api *Server
	// handle serves a request with its id in its context: the API's middleware
	// (Server.serveWithID), which a test may replace.
	handle func(w http.ResponseWriter, r *http.Request, id string)
	// lane: the reserve requests go the reserve lane (serveReserve) first; off in
	// the tests that replace handle.
	lane bool
	cfg  HTTPConfig
	srv  *fasthttp.Server
	pool sync.Pool // *syncWriter
	// linger bounds how long a connection closed after an error answer waits for its
	// client's end (lingerTime; a test sets it before Serve).
	linger time.Duration

	template http.Request // the fields every request starts from: its context

	closing atomic.Bool // Shutdown or Close was called
	mu      sync.Mutex
	conns   map[net.Conn]struct{} // open connections fasthttp serves
	streams map[net.Conn]struct{} // hijacked connections of running event streams
	wg      sync.WaitGroup        // the running event streams
	lns     []net.Listener
	open    atomic.Int64 // open connections (lingerListener)
}

// NewHTTPServer returns the HTTP server of s's API with the limits of cfg.
func (s *Server) NewHTTPServer(cfg HTTPConfig) *HTTPServer {
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.BaseContext == nil {
		cfg.BaseContext = context.Background()
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = s.Logger
	}
	s.Handler() // builds the routes
	t := &HTTPServer{api: s, handle: s.serveWithID, lane: true, cfg: cfg, conns: map[net.Conn]struct{}{}, streams: map[net.Conn]struct{}{}}
	t.template = *(&http.Request{}).WithContext(cfg.BaseContext)
	t.pool.New = func() any { return &syncWriter{header: make(http.Header, 8)} }
	t.srv = &fasthttp.Server{
		Handler:               t.serve,
		ErrorHandler:          t.serveError,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		ReadBufferSize:        cfg.MaxHeaderBytes,
		MaxRequestBodySize:    MaxBodyBytes,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true, // fasthttp's is refreshed once a second, up to a second late: httpDate
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		// The contract's 415 for a body that is not JSON, not fasthttp's parse.
		DisablePreParseMultipartForm: true,
		// fasthttp's messages quote the bytes of a request it could not parse,
		// Authorization included, unless told not to.
		SecureErrorLogMessage: true,
		Logger:                fasthttpLogger{cfg.ErrorLog},
		ConnState:             t.track,
	}
	return t
}

// MaxConns returns the bound on open connections (HTTPConfig.MaxConns; 0: none).
func (t *HTTPServer) MaxConns() int { return t.cfg.MaxConns }

// Serve accepts connections on ln until Shutdown or Close; it then returns nil.
func (t *HTTPServer) Serve(ln net.Listener) error {
	t.mu.Lock()
	if t.closing.Load() {
		t.mu.Unlock()
		ln.Close()
		return nil
	}
	t.lns = append(t.lns, ln) // closed by Shutdown even if it runs before fasthttp has it
	t.mu.Unlock()
	err := t.srv.Serve(&lingerListener{Listener: ln, t: t, linger: cmp.Or(t.linger, lingerTime)})
	if t.closing.Load() {
		return nil
	}
	return err
}

// track keeps the set of open connections (fasthttp's ConnState hook).
func (t *HTTPServer) track(c net.Conn, state fasthttp.ConnState) {
	switch state {
	case fasthttp.StateNew:
		t.mu.Lock()
		t.conns[c] = struct{}{}
		t.mu.Unlock()
	case fasthttp.StateHijacked, fasthttp.StateClosed:
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
	}
}

// Shutdown stops accepting connections, tells the event streams to end, and waits
// until every request in flight is answered and every stream has ended, or ctx ends
// (then it returns ctx's error and Close ends what is left). Connections are closed
// once idle, or after their answer in flight.
func (t *HTTPServer) Shutdown(ctx context.Context) error {
	t.stopAccepting()
	t.api.CloseStreams()
	err := t.srv.ShutdownWithContext(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil // the listener stopAccepting closed
	}
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// Close closes the listeners and every connection at once, and fails the event
// streams' pending writes; handlers still running end on their own (their backends
// bound them), and their answers are lost.
func (t *HTTPServer) Close() error {
	t.stopAccepting()
	t.api.CloseStreams()
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if lc, ok := c.(*lingerConn); ok {
			c = lc.Conn // at once, without a linger
		}
		c.Close()
	}
	for c := range t.streams {
		// fasthttp closes a hijacked connection once its handler returns; a past
		// deadline fails the stream's pending write and ends it.
		c.SetDeadline(time.Unix(1, 0))
	}
	return nil
}

// stopAccepting marks the server closing and closes its listeners.
func (t *HTTPServer) stopAccepting() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing.Store(true)
	for _, ln := range t.lns {
		ln.Close()
	}
}

// serve answers one request.
func (t *HTTPServer) serve(ctx *fasthttp.RequestCtx) {
	w := t.pool.Get().(*syncWriter)
	if t.lane && t.serveReserve(ctx, w) {
		t.answered(ctx, w)
		return
	}
	r, id, err := t.request(ctx, &w.conv)
	if err != nil {
		w.reset()
		t.pool.Put(w)
		t.serveError(ctx, err)
		return
	}
	if t.api.isStream(r) {
		// The stream's handler runs on after this function returns: the request
		// keeps w's storage, which never goes back to the pool.
		t.hijackStream(ctx, r, id)
		return
	}
	w.ctx, w.head = ctx, r.Method == http.MethodHead
	defer func() {
		if v := recover(); v != nil {
			// The middleware answers every panic but net/http's ErrAbortHandler,
			// which means: drop the connection without an answer.
			if v != http.ErrAbortHandler {
				t.api.Logger.Error("httpapi: panic outside the middleware", "panic", v)
			}
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(net.Conn) {})
		}
		w.reset()
		t.pool.Put(w)
	}()
	t.handle(w, r, id)
	w.finish()
	if t.closing.Load() {
		ctx.SetConnectionClose() // after finish: setDate resets the header
	}
}

// answered completes the answer of the reserve lane, as serve does the others', and
// returns w to the pool.
func (t *HTTPServer) answered(ctx *fasthttp.RequestCtx, w *syncWriter) {
	w.finish()
	if t.closing.Load() {
		ctx.SetConnectionClose()
	}
	w.reset()
	t.pool.Put(w)
}

// request converts ctx's request into an *http.Request for the handlers, with its
// request id in its context, and returns the id. Every string and the body are
// copies, so that nothing a handler keeps refers to fasthttp's buffers, which the
// next request on the connection reuses.
func (t *HTTPServer) request(ctx *fasthttp.RequestCtx, c *conversion) (*http.Request, string, error) {
	var proto string
	var major, minor int
	switch p := ctx.Request.Header.Protocol(); string(p) {
	case "HTTP/1.1":
		proto, major, minor = "HTTP/1.1", 1, 1
	case "HTTP/1.0":
		proto, major, minor = "HTTP/1.0", 1, 0
	default:
		return nil, "", fmt.Errorf("%w: %q is not served, send HTTP/1.1", errMalformed, truncate(string(p), 16))
	}
	uri := string(ctx.RequestURI())
	u, err := requestURL(uri, &c.url)
	if err != nil {
		return nil, "", fmt.Errorf("%w: the request target %q is not a URL", errMalformed, truncate(uri, 64))
	}
	// Each field's first value is a slice of one array, as net/textproto does: one
	// allocation for all the fields' slices instead of one per field. Each value is
	// a string of its own, so that what a handler keeps (an idempotency key, for a
	// reservation's life) does not keep the others (a bearer token, cookies) alive.
	n := ctx.Request.Header.Len()
	vals := make([]string, n)
	if c.header == nil {
		c.header = make(http.Header, n)
	}
	header := c.header
	var host string
	var te []string
	for k, v := range ctx.Request.Header.All() {
		val := string(v)
		switch key := headerKey(k); key {
		case "Host":
			host = val
		case "Transfer-Encoding":
			te = append(te, val)
		default:
			if prev, ok := header[key]; ok {
				header[key] = append(prev, val)
			} else {
				vals[0] = val
				header[key], vals = vals[:1:1], vals[1:]
			}
		}
	}
	// The request is made by WithContext, with the id in its context: the one
	// copy of it the middleware would otherwise make.
	id := t.api.requestID(header)
	c.req = *t.template.WithContext(revguard.WithRequestID(t.cfg.BaseContext, id))
	r := &c.req
	r.Proto, r.ProtoMajor, r.ProtoMinor = proto, major, minor
	r.Method = method(ctx.Method())
	r.URL = u
	r.RequestURI = uri
	r.Header = header
	r.Host = host
	r.TransferEncoding = te
	if b := ctx.PostBody(); len(b) > 0 {
		c.body.Reset(bytes.Clone(b))
		r.Body = &c.body
		r.ContentLength = int64(len(b))
	} else {
		r.Body = http.NoBody
	}
	if lc, ok := ctx.Conn().(*lingerConn); ok {
		r.RemoteAddr = lc.addr
	} else {
		r.RemoteAddr = ctx.RemoteAddr().String()
	}
	return r, id, nil
}

// requestURL parses a request target as url.ParseRequestURI does. A plain path, of
// letters, digits and "-._~/" only (every path of the API's own clients), is its own
// URL path without the parse (FuzzRequestURL checks that both agree on every input).
func requestURL(uri string, u *url.URL) (*url.URL, error) {
	if len(uri) == 0 || uri[0] != '/' {
		return url.ParseRequestURI(uri)
	}
	for i := 1; i < len(uri); i++ {
		switch c := uri[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '/':
		default:
			return url.ParseRequestURI(uri)
		}
	}
	*u = url.URL{Path: uri}
	return u, nil
}

// conversion is the storage of one converted request, reused for the next request
// once the handler has returned (handlers keep no *http.Request, header map or URL past
// their return; the strings in them are each request's own).
type conversion struct {
	req    http.Request
	url    url.URL
	body   requestBody
	header http.Header
}

// maxKeptHeader is the most header fields a reused header map is kept for: a map
// grown by a request with many more (16 KiB of header allows about 2,000) would
// cost every later request on the writer the clearing of all its space.
const maxKeptHeader = 32

// reset drops what the last request held, keeping the header map's space unless it
// grew past maxKeptHeader fields.
func (c *conversion) reset() {
	c.req, c.url = http.Request{}, url.URL{}
	c.body.Reset(nil)
	if len(c.header) > maxKeptHeader {
		c.header = nil
	} else {
		clear(c.header)
	}
}

// requestBody is a request's body as a handler reads it.
type requestBody struct{ bytes.Reader }

func (*requestBody) Close() error { return nil }

// method returns m as a string, without an allocation for the API's methods.
func method(m []byte) string {
	for _, known := range [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodOptions, http.MethodPatch} {
		if string(m) == known {
			return known
		}
	}
	return string(m)
}

// commonHeaders are the header names that cost no allocation.
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Cf-Connecting-Ip", "Cf-Turnstile-Response", "Connection", "Content-Length", "Content-Type", "Cookie",
		"Host", "Idempotency-Key", "If-None-Match", "Last-Event-Id", "Origin", "Referer", "Transfer-Encoding",
		"User-Agent", "X-Forwarded-For", "X-Real-Ip", "X-Request-Id"} {
		m[k] = k
	}
	return m
}()

// headerKey returns the canonical form of a header name as a string (fasthttp
// normalises the names it reads the way net/http does).
func headerKey(k []byte) string {
	if s, ok := commonHeaders[string(k)]; ok {
		return s
	}
	return http.CanonicalHeaderKey(string(k))
}

// errMalformed marks a request that is not HTTP the server can serve.
var errMalformed = errors.New("malformed request")

// serveError answers a request that could not be read (fasthttp's ErrorHandler) or
// converted with a problem document; fasthttp closes the connection after it. A
// request that timed out is not answered: its connection is closed at once.
func (t *HTTPServer) serveError(ctx *fasthttp.RequestCtx, err error) {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.cfg.ErrorLog.Debug("httpapi: no request within the read timeout; closing the connection", "error", err)
		ctx.Conn().Close() // fasthttp's error answer then fails on the closed connection
		return
	}
	code, detail := revguard.CodeInvalidRequest, "malformed HTTP request"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		code, detail = revguard.CodeHeaderTooLarge, "the request line and header fields are larger than "+strconv.Itoa(t.cfg.MaxHeaderBytes)+" bytes"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, detail = revguard.CodeBodyTooLarge, "the request body is larger than "+strconv.Itoa(MaxBodyBytes)+" bytes"
	case errors.Is(err, errMalformed):
		detail = err.Error()
	}
	if lc, ok := ctx.Conn().(*lingerConn); ok {
		lc.linger.Store(true)
	}
	ctx.Response.ResetBody() // not Reset, which would forget the server's NoDefaultDate
	ctx.Response.SkipBody = false
	w := &syncWriter{ctx: ctx, header: http.Header{}}
	// The request id of what fasthttp read of this request's header is echoed as on
	// any other answer (validRequestID, as the middleware reads it): a body announced
	// too large, or a target that is not a URL, comes after a header read whole.
	// fasthttp forgets the header of a chunked body that grew too large, and a header
	// it could not parse has none: those get an id of their own.
	id := ""
	if v := string(ctx.Request.Header.Peek("X-Request-Id")); validRequestID(v) {
		id = v
	}
	id = t.api.writeProblemOutside(w, id, code, detail)
	w.finish()
	t.cfg.ErrorLog.LogAttrs(context.Background(), slog.LevelDebug, "httpapi: unreadable request",
		slog.String("request_id", id), slog.String("code", string(code)), slog.Any("error", err))
	ctx.SetConnectionClose()
}

// lingerListener hands fasthttp connections that can close the way net/http closes
// one after an error answer. It keeps their count under MaxConns, and rides out a
// lack of file descriptors, which fasthttp would take for the listener's end.
type lingerListener struct {
	net.Listener
	t      *HTTPServer
	linger time.Duration
	logged time.Time // of the last accept failure logged (at most one in 10 s)
}

// Accept returns the next connection. A connection over MaxConns is refused
// (refuseConn) and the next one awaited. When the process or the system is out of
// file descriptors or memory for one, it waits, from 5 ms doubling to 1 s, as
// net/http's Serve does, and tries again: descriptors come back as connections close
// (an idle one within the read timeout).
func (l *lingerListener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !acceptRetryable(err) {
				return nil, err
			}
			wait = min(max(2*wait, 5*time.Millisecond), time.Second)
			if now := time.Now(); now.Sub(l.logged) >= 10*time.Second {
				l.logged = now
				l.t.cfg.ErrorLog.Error("httpapi: cannot accept connections; retrying", "error", err)
			}
			time.Sleep(wait)
			continue
		}
		wait = 0
		if n := l.t.open.Add(1); l.t.cfg.MaxConns > 0 && n > int64(l.t.cfg.MaxConns) {
			l.t.open.Add(-1)
			l.t.refuseConn(c)
			continue
		}
		return &lingerConn{Conn: c, addr: c.RemoteAddr().String(), lingerFor: l.linger, open: &l.t.open}, nil
	}
}

// acceptRetryable reports whether an Accept failed for want of a resource that comes
// back (a file descriptor, kernel memory), not for the listener's end.
func acceptRetryable(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// refuseConn answers a connection over MaxConns before reading its request, 503
// unavailable (a problem document with its request id and Retry-After, as every 503
// is), and closes it. The write is bounded: a client that reads nothing does not hold
// the accepting goroutine.
func (t *HTTPServer) refuseConn(c net.Conn) {
	id := t.api.newRequestID()
	body := appendProblem(nil, revguard.CodeUnavailable, "too many open connections: retry shortly", id)
	head := fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nContent-Length: %d\r\n"+
		"Retry-After: 1\r\nX-Request-Id: %s\r\nX-Content-Type-Options: nosniff\r\nDate: %s\r\nConnection: close\r\n\r\n",
		len(body), id, httpDate().text)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(append([]byte(head), body...))
	c.Close()
}

// lingerTime bounds how long a connection closed after an error answer waits for its
// client's end (net/http waits as long).
const lingerTime = 500 * time.Millisecond

// lingerConn is a connection whose Close, once an error answer was written on it,
// first ends the sending side and reads what the client still sends, up to
// lingerTime: closing with unread data makes the kernel reset the connection, and a
// reset can destroy the answer before the client reads it (a client still sending a
// body over 64 KiB would see a broken pipe instead of its 413).
//
// It also carries the client's address as text, formatted once per connection (0.8
// µs a request otherwise). The wrapper costs one thing: fasthttp writes an answer
// larger than its 4 KiB buffer with writev only to a *net.TCPConn, so such answers
// (order lists, the OpenAPI document, the dashboard's files) take one more copy.
type lingerConn struct {
	net.Conn
	addr      string
	lingerFor time.Duration
	linger    atomic.Bool
	open      *atomic.Int64 // the server's count of open connections
	closed    atomic.Bool
}

func (c *lingerConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		defer c.open.Add(-1) // once the descriptor is closed, after any linger
	}
	if c.linger.CompareAndSwap(true, false) {
		if tc, ok := c.Conn.(*net.TCPConn); ok && tc.CloseWrite() == nil {
			tc.SetReadDeadline(time.Now().Add(c.lingerFor))
			io.Copy(io.Discard, tc)
		}
	}
	return c.Conn.Close()
}

// truncate shortens s to at most n bytes for a message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// syncWriter is the http.ResponseWriter of a request answered on fasthttp's
// goroutine: the answer goes to ctx.Response, which fasthttp writes once the handler
// returns.
type syncWriter struct {
	conv    conversion // the storage of the request it answers
	ctx     *fasthttp.RequestCtx
	header  http.Header
	head    bool // a HEAD request: the body is dropped, its length kept
	status  int
	body    int  // bytes written
	counted bool // ipCounter
}

func (w *syncWriter) Header() http.Header { return w.header }

func (w *syncWriter) ipCounted() *bool { return &w.counted }

// Status is the status sent, 0 while none was (statusWriter).
func (w *syncWriter) Status() int { return w.status }

// WriteHeader sends the status and the header fields set so far; as with net/http,
// a Content-Type is sniffed from the body's first bytes when none was set (finish).
func (w *syncWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		return // a second call, or an informational status the API never sends
	}
	w.status = code
	h := &w.ctx.Response.Header
	setDate(h)
	w.ctx.SetStatusCode(code)
	for k, vv := range w.header {
		switch k {
		case "Content-Length":
			// fasthttp writes the length of the body it holds.
		case "Content-Type":
			if len(vv) > 0 {
				h.SetContentType(vv[0])
			}
		default:
			for _, v := range vv {
				h.Add(k, v)
			}
		}
	}
}

func (w *syncWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.body += len(b)
	if w.head {
		return len(b), nil
	}
	return w.ctx.Write(b)
}

// finish completes the answer after the handler returned: the implicit 200, the
// sniffed Content-Type, and for HEAD the length the GET's body would have had.
func (w *syncWriter) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	h := &w.ctx.Response.Header
	if w.body > 0 && len(h.ContentType()) == 0 {
		if b := w.ctx.Response.Body(); len(b) > 0 {
			h.SetContentType(http.DetectContentType(b))
		}
	}
	if w.head {
		w.ctx.Response.SkipBody = true
		h.SetContentLength(w.body)
	}
}

func (w *syncWriter) reset() {
	clear(w.header)
	w.conv.reset()
	w.ctx, w.head, w.status, w.body, w.counted = nil, false, 0, 0, false
}

// isStream reports whether r is for one of the event streams: a GET (or HEAD) whose
// path ends as theirs do (routes checks it) and that the mux routes to one.
func (s *Server) isStream(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if p := r.URL.Path; !strings.HasSuffix(p, "/events") && !strings.HasSuffix(p, "/stream") {
		return false
	}
	_, pattern := s.mux.Handler(r)
	return s.streamRoutes[pattern]
}

// hijackStream serves an event stream on its own connection, taken over from
// fasthttp once the request is read.
func (t *HTTPServer) hijackStream(ctx *fasthttp.RequestCtx, r *http.Request, id string) {
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		w := &streamWriter{conn: c, bw: bufio.NewWriter(c), header: http.Header{}, head: r.Method == http.MethodHead}
		// Registered here, not before the hijack: fasthttp may drop a connection
		// without calling this function (a failed flush of pipelined answers).
		t.mu.Lock()
		if t.closing.Load() {
			t.mu.Unlock()
			t.api.writeProblemOutside(w, id, revguard.CodeUnavailable, "the server is shutting down")
			w.finish()
			return
		}
		t.wg.Add(1) // Shutdown waits only after closing is set, under t.mu
		t.streams[c] = struct{}{}
		t.mu.Unlock()
		defer func() {
			t.mu.Lock()
			delete(t.streams, c)
			t.mu.Unlock()
			t.wg.Done()
		}()
		c.SetDeadline(time.Time{}) // the stream sets a deadline for each write
		rctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		// The client has nothing more to send: reading ends when it disconnects
		// (or when the connection is failed after the handler returns). Bytes it
		// sends anyway are dropped, as net/http does.
		reading := make(chan struct{})
		go func() {
			defer close(reading)
			defer cancel()
			var b [512]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					return
				}
			}
		}()
		defer func() {
			// fasthttp recycles c once this function returns: end the read first.
			c.SetReadDeadline(time.Unix(1, 0))
			<-reading
		}()
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				t.api.Logger.Error("httpapi: panic outside the middleware", "panic", v)
			}
		}()
		t.handle(w, r.WithContext(rctx), id)
		w.finish()
	})
}

// streamWriter is the http.ResponseWriter of an event stream: it writes HTTP/1.1 to
// the hijacked connection itself. Until the first flush the answer is buffered, so
// an answer that never flushes (a refusal) goes out with its Content-Length; a
// flushed one is delimited by the connection's close. The connection is closed once
// the handler returns either way.
type streamWriter struct {
	conn    net.Conn
	bw      *bufio.Writer
	header  http.Header
	head    bool
	status  int
	sent    bool         // the status line and header fields are written
	buf     bytes.Buffer // the body until the first flush
	flushed bool
	err     error
	counted bool // ipCounter
}

func (w *streamWriter) Header() http.Header { return w.header }

func (w *streamWriter) ipCounted() *bool { return &w.counted }

// Status is the status sent, 0 while none was (statusWriter).
func (w *streamWriter) Status() int { return w.status }

func (w *streamWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		return
	}
	w.status = code
}

func (w *streamWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.head {
		return len(b), nil
	}
	if !w.flushed {
		return w.buf.Write(b)
	}
	n, err := w.bw.Write(b)
	w.err = err
	return n, err
}

// writeHead writes the status line and the header fields, with the Content-Length
// of the buffered body when length is not negative.
func (w *streamWriter) writeHead(length int) {
	if w.sent {
		return
	}
	w.sent = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	fmt.Fprintf(w.bw, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	w.header.Del("Content-Length")
	w.header.Del("Transfer-Encoding")
	w.header.Set("Connection", "close")
	if w.header.Get("Date") == "" {
		w.header.Set("Date", httpDate().text)
	}
	if length >= 0 {
		w.header.Set("Content-Length", strconv.Itoa(length))
	}
	w.header.Write(w.bw)
	w.bw.WriteString("\r\n")
}

// FlushError sends what was written; its error tells the handler that the client is
// gone or too slow (http.ResponseController.Flush).
func (w *streamWriter) FlushError() error {
	if w.err != nil {
		return w.err
	}
	if !w.flushed {
		w.flushed = true
		w.writeHead(-1)
		w.buf.WriteTo(w.bw)
	}
	w.err = w.bw.Flush()
	return w.err
}

// Flush is FlushError without the error (http.Flusher).
func (w *streamWriter) Flush() { w.FlushError() }

// SetWriteDeadline bounds the next writes (http.ResponseController).
func (w *streamWriter) SetWriteDeadline(d time.Time) error { return w.conn.SetWriteDeadline(d) }

// finish sends an answer that was never flushed, with its length.
func (w *streamWriter) finish() {
	if w.err != nil {
		return
	}
	if !w.flushed {
		w.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout)) // a refusal's client may not read
		w.writeHead(w.buf.Len())
		w.buf.WriteTo(w.bw)
	}
	w.bw.Flush()
}

// lastDate is the Date of the current second and, once an answer has made it, a
// response head holding only that Date.
var lastDate atomic.Pointer[dateValue]

type dateValue struct {
	unix int64
	text string                   // the Date value (RFC 9110 5.6.7)
	head *fasthttp.ResponseHeader // nil, or a head with only this Date (setDate)
}

// dateReaders read the heads of setDate.
var dateReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64) }}

// httpDate returns the current second's Date: clients (the load test's checks among
// them) read it as the time the answer left, so it must not lag as fasthttp's own,
// refreshed by a timer that sleeps a second between refreshes, can.
func httpDate() *dateValue {
	now := time.Now()
	if d := lastDate.Load(); d != nil && d.unix == now.Unix() {
		return d
	}
	d := &dateValue{unix: now.Unix(), text: now.UTC().Format(http.TimeFormat)}
	lastDate.Store(d)
	return d
}

// setDate resets h, an answer's head, to one holding only the current Date.
// fasthttp manages the Date field itself and drops one set through its setters; a
// parsed one it writes when the server's NoDefaultDate is set, which h carries. So
// the first answer of a second parses the head into h and keeps a copy of the
// result (NoDefaultDate included), and the second's other answers copy that. h must
// come from the serve loop of an HTTPServer (every one sets NoDefaultDate and
// NoDefaultContentType), since the copy takes those flags from the first answer of
// its second.
func setDate(h *fasthttp.ResponseHeader) {
	d := httpDate()
	if d.head != nil {
		d.head.CopyTo(h)
		return
	}
	br := dateReaders.Get().(*bufio.Reader)
	br.Reset(strings.NewReader("HTTP/1.1 200 OK\r\nDate: " + d.text + "\r\n\r\n"))
	if err := h.Read(br); err != nil {
		panic("httpapi: parse the Date head: " + err.Error()) // a constant form: cannot fail
	}
	br.Reset(nil)
	dateReaders.Put(br)
	// Only the Date: no reason phrase (the status's own is written), and no
	// reading to the close for want of a length.
	h.SetStatusMessage(nil)
	h.ResetConnectionClose()
	head := new(fasthttp.ResponseHeader)
	h.CopyTo(head)
	lastDate.CompareAndSwap(d, &dateValue{unix: d.unix, text: d.text, head: head})
}

// fasthttpLogger hands fasthttp's messages to the API's logger.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	// Connection errors (a reset, a timeout, an unreadable request, which
	// serveError logs with its request id): nothing for an operator to act on.
	f.l.Debug("httpapi: fasthttp: " + fmt.Sprintf(format, args...))
}
