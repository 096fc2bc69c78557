package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi/internal/urlpath"
)

// bareHTTPServer is an HTTPServer whose handler is h instead of the API's middleware
// and routes (the API's own stores are not used), not yet serving.
func bareHTTPServer(h http.Handler) *HTTPServer {
	s := NewServer()
	s.Inventory, s.Ledger, s.Sessions = struct{ revguard.Inventory }{}, struct{ revguard.Ledger }{}, struct{ revguard.Sessions }{}
	srv := s.NewHTTPServer(HTTPConfig{ReadTimeout: 5 * time.Second})
	srv.handle = func(w http.ResponseWriter, r *http.Request, _ string) { h.ServeHTTP(w, r) }
	srv.lane = false // every request reaches h
	return srv
}

// newBareHTTPServer is a bareHTTPServer serving on a loopback port until the test ends.
func newBareHTTPServer(t *testing.T, h http.Handler) (*HTTPServer, string) {
	t.Helper()
	srv := bareHTTPServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().String()
}

// dialRaw opens a connection to addr, closed with the test, every read and write of
// it bounded by a deadline.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// rawRoundTrip sends request on a connection of its own to addr and reads the answer.
func rawRoundTrip(t *testing.T, addr, request string) (*http.Response, error) {
	t.Helper()
	c := dialRaw(t, addr)
	io.WriteString(c, request)
	return http.ReadResponse(bufio.NewReader(c), nil)
}

// TestRequestCopies: the *http.Request a handler gets shares no memory with
// fasthttp's request, which the connection's next request overwrites in place.
func TestRequestCopies(t *testing.T) {
	srv := bareHTTPServer(http.NotFoundHandler())
	var ctx fasthttp.RequestCtx
	set := func(sku, key, host, body string) {
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v1/skus/" + sku + "/reservations?q=" + key)
		ctx.Request.Header.Set("Idempotency-Key", key)
		ctx.Request.Header.Set("X-Forwarded-For", host)
		ctx.Request.Header.Add("X-Forwarded-For", key) // a field sent twice
		ctx.Request.Header.Set("Host", host)
		ctx.Request.SetBodyString(body)
	}
	set("aaaa", "key-0000", "h1.example", `{"quantity":1}`)
	r, id, err := srv.request(&ctx, new(conversion))
	if err != nil {
		t.Fatal(err)
	}
	if got := revguard.RequestIDFromContext(r.Context()); got != id || id == "" {
		t.Fatalf("the request's context carries id %q, request returned %q", got, id)
	}
	// The same lengths, other bytes: fasthttp reuses its buffers for them.
	set("bbbb", "key-9999", "h2.example", `{"quantity":9}`)
	body, _ := io.ReadAll(r.Body)
	got := []string{r.Method, r.URL.Path, r.URL.RawQuery, r.RequestURI, r.Header.Get("Idempotency-Key"), r.Header.Get("X-Forwarded-For"), r.Host, string(body)}
	want := []string{"POST", "/v1/skus/aaaa/reservations", "q=key-0000", "/v1/skus/aaaa/reservations?q=key-0000", "key-0000", "h1.example", "h1.example", `{"quantity":1}`}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("after the next request, field %d of the converted request is %q, want %q", i, got[i], want[i])
		}
	}
	if xff := r.Header["X-Forwarded-For"]; len(xff) != 2 || xff[0] != "h1.example" || xff[1] != "key-0000" {
		t.Fatalf("X-Forwarded-For sent twice: %q", xff)
	}
	// Appending to one field's values must not write into another's.
	r.Header["Idempotency-Key"] = append(r.Header["Idempotency-Key"], "extra")
	if got := r.Header.Get("X-Forwarded-For"); got != "h1.example" {
		t.Fatalf("after an append to another field, X-Forwarded-For is %q", got)
	}
}

// TestConversionReused: a conversion reset and reused converts the next request into
// the same *http.Request, equal field for field to a fresh conversion of it: no
// header field, body, path, query or host of the request before survives, and a
// header map grown past maxKeptHeader fields is dropped rather than kept.
func TestConversionReused(t *testing.T) {
	srv := bareHTTPServer(http.NotFoundHandler())
	newCtx := func(method, uri, body string, header ...string) *fasthttp.RequestCtx {
		ctx := new(fasthttp.RequestCtx)
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(uri)
		for i := 0; i < len(header); i += 2 {
			ctx.Request.Header.Add(header[i], header[i+1])
		}
		if body != "" {
			ctx.Request.SetBodyString(body)
		}
		return ctx
	}
	many := []string{"Host", "h4.example"}
	for i := range maxKeptHeader + 8 {
		many = append(many, fmt.Sprintf("X-Field-%d", i), "v")
	}
	var c conversion
	var prev *http.Request
	for i, ctx := range []*fasthttp.RequestCtx{
		newCtx("POST", "/v1/skus/aaaa/reservations", `{"quantity":12345}`, "Host", "h1.example",
			"Idempotency-Key", "key-first", "X-Only-First", "yes", "X-Request-Id", "id-first"),
		newCtx("POST", "/v1/skus/b/reservations", `{"quantity":1}`, "Host", "h2.example", "Idempotency-Key", "key-2"),
		newCtx("GET", "/v1/skus/b?x=1", "", "Host", "h3.example"),
		newCtx("GET", "/healthz", "", many...),
		newCtx("GET", "/readyz", "", "Host", "h5.example"),
	} {
		r, _, err := srv.request(ctx, &c)
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil && r != prev {
			t.Fatalf("request %d: a new *http.Request, not the conversion's", i)
		}
		prev = r
		fresh, _, err := srv.request(ctx, new(conversion))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		freshBody, _ := io.ReadAll(fresh.Body)
		if r.Method != fresh.Method || r.Proto != fresh.Proto || r.RequestURI != fresh.RequestURI ||
			r.Host != fresh.Host || r.ContentLength != fresh.ContentLength || r.RemoteAddr != fresh.RemoteAddr ||
			r.Pattern != "" || string(body) != string(freshBody) ||
			!reflect.DeepEqual(*r.URL, *fresh.URL) || !reflect.DeepEqual(r.Header, fresh.Header) ||
			!reflect.DeepEqual(r.TransferEncoding, fresh.TransferEncoding) {
			t.Fatalf("request %d converted into reused storage differs from a fresh conversion:\n%+v %q\n%+v %q", i, r, body, fresh, freshBody)
		}
		if i == 0 && revguard.RequestIDFromContext(r.Context()) != "id-first" {
			t.Fatalf("the first request's id is %q", revguard.RequestIDFromContext(r.Context()))
		}
		if i > 0 && revguard.RequestIDFromContext(r.Context()) == "id-first" {
			t.Fatalf("request %d carries the first one's id", i)
		}
		r.Pattern = "GET /stale/{p}" // as the mux sets it; the next conversion must not keep it
		n := len(c.header)
		c.reset()
		if kept := c.header != nil; kept != (n <= maxKeptHeader) {
			t.Fatalf("request %d: header map of %d fields kept after reset: %v", i, n, kept)
		}
	}
}

// TestRequestStorageReused, end to end: nothing of one request shows in the next on
// the same connection (whether the pool hands the same storage back is up to
// sync.Pool; TestConversionReused checks the reuse itself).
func TestRequestStorageReused(t *testing.T) {
	type seen struct{ first, host, query, body, id string }
	got := make(chan seen, 1)
	_, addr := newBareHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Get("X-Only-First"), r.Host, r.URL.RawQuery, string(b), revguard.RequestIDFromContext(r.Context())}
	}))
	c := dialRaw(t, addr)
	br := bufio.NewReader(c)
	var ids []string
	for i, req := range []string{
		"POST /a?q=1 HTTP/1.1\r\nHost: first.example\r\nX-Only-First: yes\r\nX-Request-Id: id-first\r\nContent-Length: 3\r\n\r\nabc",
		"GET /b HTTP/1.1\r\nHost: second.example\r\n\r\n",
		"GET /c HTTP/1.1\r\nHost: third.example\r\n\r\n",
	} {
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		s := <-got
		ids = append(ids, s.id)
		if i == 0 {
			if s != (seen{"yes", "first.example", "q=1", "abc", "id-first"}) {
				t.Fatalf("first request seen as %+v", s)
			}
			continue
		}
		if s.first != "" || s.query != "" || s.body != "" || s.host == "first.example" || s.id == "id-first" {
			t.Fatalf("request %d sees what the first carried: %+v", i, s)
		}
	}
	if ids[1] == ids[2] {
		t.Fatalf("two requests under one id %q", ids[1])
	}
}

// TestRequestIDs: a request's context carries its id, the client's X-Request-Id when
// of sane form, else one of the server's own, on an event stream's hijacked
// connection as on any other.
func TestRequestIDs(t *testing.T) {
	ids := make(chan string, 1)
	_, addr := newBareHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids <- revguard.RequestIDFromContext(r.Context())
		io.WriteString(w, "fine")
	}))
	for _, path := range []string{"/v1/events", "/healthz"} {
		for _, sent := range []string{"client-id-42", "not a sane id", ""} {
			req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
			if sent != "" {
				req += "X-Request-Id: " + sent + "\r\n"
			}
			resp, err := rawRoundTrip(t, addr, req+"\r\n")
			if err != nil {
				t.Fatalf("%s with id %q: %v", path, sent, err)
			}
			got := <-ids
			switch {
			case got == "":
				t.Errorf("%s with id %q: no id in the request's context", path, sent)
			case sent == "client-id-42" && got != sent:
				t.Errorf("%s: the context carries id %q, want the client's %q", path, got, sent)
			case sent != "client-id-42" && got == sent:
				t.Errorf("%s: the context carries the client's id %q, which is not of sane form", path, got)
			}
			if resp.StatusCode != 200 {
				t.Errorf("%s: status %d", path, resp.StatusCode)
			}
		}
	}
}

// TestStreamRefusedAtShutdown: an event stream asked for while the server shuts down
// is refused with a 503 that carries the request's id (the client's when sane).
func TestStreamRefusedAtShutdown(t *testing.T) {
	srv, addr := newBareHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			t.Errorf("the handler ran for %s while the server was shutting down", r.URL.Path)
		}
	}))
	c := dialRaw(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") // the connection is served
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	srv.closing.Store(true) // as Shutdown sets it, before it closes the idle connections
	io.WriteString(c, "GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-id-7\r\n\r\n")
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Request-Id") != "client-id-7" {
		t.Fatalf("status %d, X-Request-Id %q; want 503 with the client's id", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
}

// TestCloseEndsLinger: Close ends a connection that lingers after an error answer,
// reading what its client still sends (here for a minute, were it not ended).
func TestCloseEndsLinger(t *testing.T) {
	srv := bareHTTPServer(http.NotFoundHandler())
	srv.linger = time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	c := dialRaw(t, addr)
	// A body over the limit, announced and partly sent: a 413, then the linger.
	io.WriteString(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"+strings.Repeat("a", 1000))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	// The answer set the connection's linger flag; its Close takes the flag back
	// when the linger begins.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		srv.mu.Lock()
		lingering := false
		for conn := range srv.conns {
			if lc, ok := conn.(*lingerConn); ok && !lc.linger.Load() {
				lingering = true
			}
		}
		srv.mu.Unlock()
		if lingering {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection never began to linger after its 413")
		}
	}
	// While it lingers the server reads and drops what the client sends (its sending
	// side is already shut: the client reads EOF either way); once closed, the
	// client's writes are reset.
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatalf("a write to the lingering connection: %v", err)
	}
	srv.Close()
	for {
		_, err := c.Write(make([]byte, 1000))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the lingering connection still took writes 5 s after Close")
		}
		if err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHandlerPanics: a handler that panics (net/http's ErrAbortHandler, or anything
// the middleware did not catch) drops its connection without an answer; the
// process and the other connections go on.
func TestHandlerPanics(t *testing.T) {
	_, addr := newBareHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/panic":
			panic("boom")
		}
		io.WriteString(w, "fine")
	}))
	get := func(path string) (*http.Response, error) {
		return rawRoundTrip(t, addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	for _, p := range []string{"/abort", "/panic"} {
		if resp, err := get(p); err == nil {
			t.Fatalf("%s answered %d", p, resp.StatusCode)
		} else if !strings.Contains(err.Error(), "EOF") {
			t.Fatalf("%s: %v, want the connection closed", p, err)
		}
	}
	resp, err := get("/ok")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the panics: %v %v", resp, err)
	}
}

// FuzzRequestURL: requestURL's shortcut for plain paths gives what
// url.ParseRequestURI gives, on any request target.
func FuzzRequestURL(f *testing.F) {
	for _, s := range []string{"/v1/skus/hot/reservations", "/", "//x", "/a/../b", "/a%2Fb", "/x?y=1", "*", "http://h/p", "", "/a b", "/é", "/a~b_c-d.e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		got, gotErr := requestURL(uri, new(url.URL))
		want, wantErr := url.ParseRequestURI(uri)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("requestURL(%q) error %v, url.ParseRequestURI %v", uri, gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("requestURL(%q) = %#v, url.ParseRequestURI %#v", uri, got, want)
		}
	})
}

// FuzzReserveTarget: a request target the reserve lane takes (reserveTarget) is one
// the general path routes, unchanged, to the reserve handler with the same {sku}; and
// the lane takes every such target whose {sku} is a valid SKU id written as is.
func FuzzReserveTarget(f *testing.F) {
	for _, s := range []string{"/v1/skus/hot/reservations", "/v1/skus/a:b-c.d_e/reservations", "/v1/skus//reservations",
		"/v1/skus/./reservations", "/v1/skus/../reservations", "/v1/skus/a/b/reservations", "/v1/skus/x/reservations?y=1",
		"/v1/skus/%41/reservations", "http://h/v1/skus/x/reservations", "/v1/skus/x/reservations/", "/V1/skus/x/reservations",
		"/v1/skus/.a/reservations", "/v1/skus/x/reservations#f"} {
		f.Add(s)
	}
	s := bareHTTPServer(http.NotFoundHandler()).api
	// A mux with the reserve route alone, whose handler reports {sku}.
	var pathSKU string
	one := http.NewServeMux()
	one.HandleFunc(reservePattern, func(_ http.ResponseWriter, r *http.Request) { pathSKU = r.PathValue("sku") })
	f.Fuzz(func(t *testing.T, uri string) {
		sku, ok := reserveTarget([]byte(uri))
		// The general path: the parsed target, the API's own mux, then {sku}.
		u, err := url.ParseRequestURI(uri)
		routed := err == nil && urlpath.Canonical(u.Path)
		if routed {
			_, pattern := s.mux.Handler(&http.Request{Method: http.MethodPost, URL: u})
			routed = pattern == reservePattern
		}
		pathSKU = ""
		if routed {
			one.ServeHTTP(httptest.NewRecorder(), &http.Request{Method: http.MethodPost, URL: u})
		}
		plain := routed && u.RawQuery == "" && u.Path == uri && revguard.ValidSKUID(pathSKU)
		switch {
		case ok && (!routed || u.RawQuery != "" || u.Fragment != "" || u.Path != uri):
			t.Fatalf("reserveTarget(%q) took a target the general path reads as %#v (routed %v)", uri, u, routed)
		case ok && sku != pathSKU:
			t.Fatalf("reserveTarget(%q) = %q, the mux's {sku} %q", uri, sku, pathSKU)
		case !ok && plain:
			t.Fatalf("reserveTarget(%q) refused a plain reserve target ({sku} %q)", uri, pathSKU)
		}
	})
}

// TestReserveLaneDeclines checks that the reserve lane leaves to the general path,
// untouched, the requests it is not for: those it cannot answer the same way, and all
// of them while the log takes debug lines (the middleware's access line). Each is
// refused before the session lookup; the control request is answered by the lane
// (here with a 401: the store refuses every token) after one lookup.
func TestReserveLaneDeclines(t *testing.T) {
	srv := bareHTTPServer(http.NotFoundHandler())
	var lookups atomic.Int64
	srv.api.Sessions = countingSessions{n: &lookups}
	debug := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cases := map[string]func(*fasthttp.Request){
		"Control":   func(*fasthttp.Request) {},
		"GET":       func(r *fasthttp.Request) { r.Header.SetMethod("GET") },
		"HTTP/1.0":  func(r *fasthttp.Request) { r.Header.SetProtocol("HTTP/1.0") },
		"Chunked":   func(r *fasthttp.Request) { r.Header.SetContentLength(-1) },
		"OtherPath": func(r *fasthttp.Request) { r.SetRequestURI("/v1/skus/hot/reservations/") },
		"Query":     func(r *fasthttp.Request) { r.SetRequestURI("/v1/skus/hot/reservations?x=1") },
		"NotJSON":   func(r *fasthttp.Request) { r.Header.SetContentType("text/plain") },
		"TwoTokens": func(r *fasthttp.Request) { r.Header.Add("Authorization", "Bearer other") },
		"NotBearer": func(r *fasthttp.Request) { r.Header.Set("Authorization", "Basic eDp5") },
		"TwoKeys": func(r *fasthttp.Request) {
			r.Header.Add("Idempotency-Key", "a")
			r.Header.Add("Idempotency-Key", "b")
		},
		"BadBody":  func(r *fasthttp.Request) { r.SetBodyString(`{"quantity":0}`) },
		"DebugLog": func(*fasthttp.Request) { srv.api.Logger = debug },
	}
	quiet := srv.api.Logger
	for name, edit := range cases {
		srv.api.Logger = quiet // only DebugLog's request meets the debug log
		var ctx fasthttp.RequestCtx
		plainReserve(&ctx.Request)
		edit(&ctx.Request)
		if ctx.Request.Header.ContentLength() >= 0 {
			ctx.Request.Header.SetContentLength(len(ctx.Request.Body()))
		}
		before := lookups.Load()
		w := srv.pool.Get().(*syncWriter)
		served := srv.serveReserve(&ctx, w)
		control := name == "Control"
		if control && (!served || ctx.Response.StatusCode() != 401) {
			t.Errorf("Control: served %v, status %d; want the lane's 401", served, ctx.Response.StatusCode())
		}
		if !control && (served || w.ctx != nil || len(w.header) != 0 || len(ctx.Response.Body()) != 0) {
			t.Errorf("%s: the lane took the request, or wrote to its answer", name)
		}
		if looked, want := lookups.Load()-before, int64(map[bool]int{true: 1}[control]); looked != want {
			t.Errorf("%s: %d session lookups, want %d", name, looked, want)
		}
	}
}

// TestReserveLanePanic: a panic in the lane (here in the session store) is answered
// as the middleware answers one, with the internal problem under the request's id,
// and net/http's ErrAbortHandler drops the connection without an answer, as serve
// does; the process goes on either way.
func TestReserveLanePanic(t *testing.T) {
	srv := bareHTTPServer(http.NotFoundHandler())
	srv.lane = true
	srv.api.Sessions = panickingSessions{v: "session store bug"}
	var ctx fasthttp.RequestCtx
	plainReserve(&ctx.Request)
	ctx.Request.Header.Set("X-Request-Id", "panic-1")
	srv.serve(&ctx)
	body := string(ctx.Response.Body())
	if ctx.Response.StatusCode() != 500 || !strings.Contains(body, `"code":"internal"`) || !strings.Contains(body, `"request_id":"panic-1"`) ||
		string(ctx.Response.Header.Peek("X-Request-Id")) != "panic-1" || ctx.Hijacked() {
		t.Fatalf("answer %d %s %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Request-Id"), body)
	}

	srv.api.Sessions = panickingSessions{v: http.ErrAbortHandler}
	var abort fasthttp.RequestCtx
	plainReserve(&abort.Request)
	srv.serve(&abort)
	if !abort.Hijacked() || len(abort.Response.Body()) != 0 {
		t.Fatalf("ErrAbortHandler: hijacked %v, answer %d %s; want the connection dropped", abort.Hijacked(), abort.Response.StatusCode(), abort.Response.Body())
	}
}

// plainReserve makes r a reserve request of the form the lane takes.
func plainReserve(r *fasthttp.Request) {
	r.Header.SetMethod("POST")
	r.SetRequestURI("/v1/skus/hot/reservations")
	r.Header.Set("Authorization", "Bearer token")
	r.Header.SetContentType("application/json")
	r.SetBodyString(`{"quantity":1}`)
}

// countingSessions refuses every token, counting the lookups (nothing else is used).
type countingSessions struct {
	revguard.Sessions
	n *atomic.Int64
}

func (c countingSessions) FindSession(context.Context, string) (revguard.Session, error) {
	c.n.Add(1)
	return revguard.Session{}, revguard.Errorf(revguard.CodeUnauthenticated, "unknown token")
}

// panickingSessions panics with v on every lookup (nothing else is used).
type panickingSessions struct {
	revguard.Sessions
	v any
}

func (p panickingSessions) FindSession(context.Context, string) (revguard.Session, error) {
	panic(p.v)
}

// TestReserveLaneClosing: while the server shuts down, the lane's answer closes its
// connection, as the general path's does.
func TestReserveLaneClosing(t *testing.T) {
	srv := bareHTTPServer(http.NotFoundHandler())
	srv.lane = true
	var lookups atomic.Int64
	srv.api.Sessions = countingSessions{n: &lookups}
	for _, closing := range []bool{false, true} {
		srv.closing.Store(closing)
		var ctx fasthttp.RequestCtx
		plainReserve(&ctx.Request)
		srv.serve(&ctx)
		if lookups.Load() == 0 || ctx.Response.StatusCode() != 401 || ctx.Response.ConnectionClose() != closing {
			t.Errorf("closing %v: %d lookups, status %d, Connection: close %v", closing, lookups.Load(), ctx.Response.StatusCode(), ctx.Response.ConnectionClose())
		}
	}
}
