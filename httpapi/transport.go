package httpapi

import (
	"bufio"
	"bytes"
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
	// An event stream's context also ends when its client disconnects.
	BaseContext context.Context
}

// HTTPServer serves the API over HTTP/1.1 on fasthttp's connection handling, which
// costs a request less CPU than net/http's, in particular one whose handler waits
// for a group commit (net/http then starts a background read on the connection,
// parks it in the poller and wakes it again once the answer is ready). The handlers
// stay net/http handlers: each request is converted into an *http.Request whose
// strings and body are copies (the handlers may keep them, in a reservation or a
// subscription, after fasthttp reuses its buffers) and answered through an
// http.ResponseWriter on the same goroutine.
//
// The event streams (the admin events, the dashboard, a waiting-room place) are the
// exception: their connection is hijacked once the request is read and the handler
// writes the answer to it directly, flushing each event, until it returns or the
// client disconnects (which ends the request's context).
//
// A request that cannot be read as HTTP gets a problem document: 400
// invalid_request, 413 body_too_large (over MaxBodyBytes), 431 header_too_large or
// 408 request_timeout; the connection is closed after it.
type HTTPServer struct {
	api  *Server
	h    http.Handler
	cfg  HTTPConfig
	srv  *fasthttp.Server
	pool sync.Pool // *syncWriter

	mu      sync.Mutex
	streams map[net.Conn]struct{} // hijacked connections of running event streams
	wg      sync.WaitGroup        // the running event streams
	closing bool
	lns     []net.Listener
}

// NewHTTPServer returns the HTTP server of s's API with the limits of cfg.
func (s *Server) NewHTTPServer(cfg HTTPConfig) *HTTPServer {
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.BaseContext == nil {
		cfg.BaseContext = context.Background()
	}
	t := &HTTPServer{api: s, h: s.Handler(), cfg: cfg, streams: map[net.Conn]struct{}{}}
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
		Logger:                fasthttpLogger{s.Logger},
	}
	return t
}

// Serve accepts connections on ln until Shutdown or Close; it then returns nil.
func (t *HTTPServer) Serve(ln net.Listener) error {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		ln.Close()
		return nil
	}
	t.lns = append(t.lns, ln) // closed by Shutdown even if it runs before fasthttp has it
	t.mu.Unlock()
	err := t.srv.Serve(ln)
	t.mu.Lock()
	closing := t.closing
	t.mu.Unlock()
	if closing {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, tells the event streams to end, and waits
// until every request in flight is answered and every stream has ended, or ctx ends
// (then it returns ctx's error and Close ends what is left).
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

// Close closes the listener and fails the event streams' connections at once;
// requests in flight end with their handlers, whose backends bound them.
func (t *HTTPServer) Close() error {
	t.stopAccepting()
	t.mu.Lock()
	for c := range t.streams {
		// fasthttp closes a hijacked connection once its handler returns; a past
		// deadline fails the stream's pending write and ends it.
		c.SetDeadline(time.Unix(1, 0))
	}
	t.mu.Unlock()
	t.api.CloseStreams()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := t.srv.ShutdownWithContext(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// stopAccepting marks the server closing and closes its listeners.
func (t *HTTPServer) stopAccepting() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing = true
	for _, ln := range t.lns {
		ln.Close()
	}
}

// serve answers one request.
func (t *HTTPServer) serve(ctx *fasthttp.RequestCtx) {
	r, err := t.request(ctx)
	if err != nil {
		t.serveError(ctx, err)
		return
	}
	if t.api.isStream(r) {
		t.hijackStream(ctx, r)
		return
	}
	w := t.pool.Get().(*syncWriter)
	w.ctx, w.head = ctx, r.Method == http.MethodHead
	defer func() {
		if v := recover(); v != nil {
			// The middleware answers every panic but net/http's ErrAbortHandler,
			// which means: drop the connection without an answer.
			if v != http.ErrAbortHandler {
				t.api.Logger.Error("httpapi: panic outside the middleware", "panic", v)
			}
			ctx.Response.Reset()
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(net.Conn) {})
		}
		w.reset()
		t.pool.Put(w)
	}()
	t.h.ServeHTTP(w, r)
	w.finish()
}

// request converts ctx's request into an *http.Request for the handlers. Every string
// and the body are copies, so that nothing a handler keeps refers to fasthttp's
// buffers, which the next request on the connection reuses.
func (t *HTTPServer) request(ctx *fasthttp.RequestCtx) (*http.Request, error) {
	uri := string(ctx.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: the request target %q is not a URL", errMalformed, truncate(uri, 64))
	}
	r := (&http.Request{}).WithContext(t.cfg.BaseContext)
	r.Method = method(ctx.Method())
	r.URL = u
	r.RequestURI = uri
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	if !ctx.Request.Header.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	r.Header = make(http.Header, 8)
	for k, v := range ctx.Request.Header.All() {
		switch key := headerKey(k); key {
		case "Host":
			r.Host = string(v)
		case "Transfer-Encoding":
			r.TransferEncoding = append(r.TransferEncoding, string(v))
		default:
			r.Header[key] = append(r.Header[key], string(v))
		}
	}
	if body := ctx.PostBody(); len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(bytes.Clone(body)))
		r.ContentLength = int64(len(body))
	} else {
		r.Body = http.NoBody
	}
	r.RemoteAddr = ctx.RemoteAddr().String()
	return r, nil
}

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
// converted with a problem document; fasthttp closes the connection after it.
func (t *HTTPServer) serveError(ctx *fasthttp.RequestCtx, err error) {
	code, detail := revguard.CodeInvalidRequest, "malformed HTTP request"
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		code, detail = revguard.CodeHeaderTooLarge, "the request line and header fields are larger than "+strconv.Itoa(t.cfg.MaxHeaderBytes)+" bytes"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, detail = revguard.CodeBodyTooLarge, "the request body is larger than "+strconv.Itoa(MaxBodyBytes)+" bytes"
	case errors.As(err, &netErr) && netErr.Timeout():
		code, detail = revguard.CodeRequestTimeout, "the request did not arrive in time"
	case errors.Is(err, errMalformed):
		detail = err.Error()
	}
	id := t.api.newRequestID()
	t.api.Logger.LogAttrs(context.Background(), slog.LevelDebug, "httpapi: unreadable request",
		slog.String("request_id", id), slog.String("code", string(code)), slog.Any("error", err))
	ctx.Response.Reset()
	w := t.pool.Get().(*syncWriter)
	w.ctx = ctx
	w.header["X-Request-Id"] = []string{id}
	w.header["X-Content-Type-Options"] = noSniff
	r := (&http.Request{}).WithContext(revguard.WithRequestID(context.Background(), id))
	t.api.writeProblem(w, r, code, detail)
	w.finish()
	w.reset()
	t.pool.Put(w)
	ctx.SetConnectionClose()
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
	ctx    *fasthttp.RequestCtx
	header http.Header
	head   bool // a HEAD request: the body is dropped, its length kept
	status int
	body   int // bytes written
}

func (w *syncWriter) Header() http.Header { return w.header }

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
	w.ctx, w.head, w.status, w.body = nil, false, 0, 0
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
func (t *HTTPServer) hijackStream(ctx *fasthttp.RequestCtx, r *http.Request) {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		ctx.SetConnectionClose()
		t.api.writeProblemTo(ctx, revguard.CodeUnavailable, "the server is shutting down")
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer t.wg.Done()
		t.mu.Lock()
		if t.closing {
			t.mu.Unlock()
			return
		}
		t.streams[c] = struct{}{}
		t.mu.Unlock()
		defer func() {
			t.mu.Lock()
			delete(t.streams, c)
			t.mu.Unlock()
		}()
		c.SetDeadline(time.Time{}) // the stream sets a deadline for each write
		rctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		// The client sends nothing more: a read ends when it disconnects (or when
		// the connection is closed after the handler returns).
		reading := make(chan struct{})
		go func() {
			defer close(reading)
			var b [1]byte
			c.Read(b[:])
			cancel()
		}()
		defer func() {
			// fasthttp recycles c once this function returns: end the read first.
			c.SetReadDeadline(time.Unix(1, 0))
			<-reading
		}()
		w := &streamWriter{conn: c, bw: bufio.NewWriter(c), header: http.Header{}, head: r.Method == http.MethodHead}
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				t.api.Logger.Error("httpapi: panic outside the middleware", "panic", v)
			}
		}()
		t.h.ServeHTTP(w, r.WithContext(rctx))
		w.finish()
	})
}

// writeProblemTo answers ctx with the problem of code, outside any handler.
func (s *Server) writeProblemTo(ctx *fasthttp.RequestCtx, code revguard.Code, detail string) {
	id := s.newRequestID()
	w := &syncWriter{ctx: ctx, header: http.Header{"X-Request-Id": {id}, "X-Content-Type-Options": noSniff}}
	s.writeProblem(w, (&http.Request{}).WithContext(revguard.WithRequestID(context.Background(), id)), code, detail)
	w.finish()
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
}

func (w *streamWriter) Header() http.Header { return w.header }

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
		w.header.Set("Date", string(httpDate().text))
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
		w.writeHead(w.buf.Len())
		w.buf.WriteTo(w.bw)
	}
	w.bw.Flush()
}

// lastDate is the Date of the second httpDate last formatted.
var lastDate atomic.Pointer[dateValue]

type dateValue struct {
	unix int64
	text []byte // the Date value
	head string // a response head with only this Date (setDate)
}

// httpDate returns the current time as an HTTP Date (RFC 9110 5.6.7), formatted
// once a second: clients (the load test's checks among them) read it as the time
// the answer left, so it must not lag as fasthttp's own, refreshed by a timer that
// sleeps a second between refreshes, can.
func httpDate() *dateValue {
	now := time.Now()
	if d := lastDate.Load(); d != nil && d.unix == now.Unix() {
		return d
	}
	text := now.UTC().AppendFormat(nil, http.TimeFormat)
	d := &dateValue{unix: now.Unix(), text: text, head: "HTTP/1.1 200 OK\r\nDate: " + string(text) + "\r\n\r\n"}
	lastDate.Store(d)
	return d
}

// dateReaders read the heads of setDate.
var dateReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64) }}

// setDate resets h to a head holding only the current Date. fasthttp manages the
// Date field itself and drops one set through its setters, so the field is parsed
// into h, which writes a parsed Date when the server's NoDefaultDate is set.
func setDate(h *fasthttp.ResponseHeader) {
	br := dateReaders.Get().(*bufio.Reader)
	br.Reset(strings.NewReader(httpDate().head))
	if err := h.Read(br); err != nil {
		panic("httpapi: parse the Date head: " + err.Error()) // a constant form: cannot fail
	}
	br.Reset(nil)
	dateReaders.Put(br)
	// The head is only the Date: no reason phrase (the status's own is written),
	// and no reading to the close for want of a length.
	h.SetStatusMessage(nil)
	h.ResetConnectionClose()
}

// fasthttpLogger hands fasthttp's messages to the API's logger.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Warn("httpapi: " + fmt.Sprintf(format, args...))
}
