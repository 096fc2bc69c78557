package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// answerSeeds are answers as a server may write them, each with what readAnswer must
// make of it: the status, the body, whether the connection stays open ("" for an
// error).
var answerSeeds = []struct {
	name, raw string
	status    int
	body      string
	keep      string // "keep", "close" or "" for an error
}{
	{"Length", "HTTP/1.1 409 Conflict\r\nContent-Type: application/problem+json\r\nContent-Length: 5\r\n\r\nhello", 409, "hello", "keep"},
	{"NoReason", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n{}", 200, "{}", "keep"},
	{"BareLF", "HTTP/1.1 200 OK\nContent-Length: 2\n\n{}", 200, "{}", "keep"},
	{"Chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n", 200, "abc0123456789", "keep"},
	{"ChunkedEmpty", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, "", "keep"},
	{"Close", "HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 201, "x", "close"},
	{"UntilEOF", "HTTP/1.1 200 OK\r\n\r\nto the end", 200, "to the end", "close"},
	{"HTTP10", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, "x", "close"},
	{"HTTP10KeepAlive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", 200, "x", "keep"},
	{"NoContent", "HTTP/1.1 204 No Content\r\n\r\n", 204, "", "keep"},
	{"Interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, "x", "keep"},
	{"SameLengthTwice", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 200, "x", "keep"},
	{"ErrTwoLengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 0, "", ""},
	{"ErrSignedLength", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", 0, "", ""},
	{"ErrShortBody", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nx", 0, "", ""},
	{"ErrChunkedHTTP10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, "", ""},
	{"ErrGzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, "", ""},
	{"ErrChunkSize", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 0, "", ""},
	{"ErrChunkEnd", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", 0, "", ""},
	{"ErrStatus", "HTTP/1.1 2000 OK\r\n\r\n", 0, "", ""},
	{"ErrProto", "HTTP/2.0 200 OK\r\n\r\n", 0, "", ""},
	{"ErrNotHTTP", "SSH-2.0-OpenSSH\r\n", 0, "", ""},
	{"ErrHeader", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 0, "", ""},
	{"ErrSpaceInName", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", 0, "", ""},
	{"ErrSwitching", "HTTP/1.1 101 Switching Protocols\r\n\r\n", 0, "", ""},
	{"ErrBodyOn204", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc", 0, "", ""},
	{"ErrTruncatedHead", "HTTP/1.1 200 OK\r\nContent-Len", 0, "", ""},
	{"ErrEmpty", "", 0, "", ""},
	{"ErrLongLine", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", h1BufSize) + "\r\n\r\n", 0, "", ""},
}

func TestReadAnswer(t *testing.T) {
	for _, tt := range answerSeeds {
		t.Run(tt.name, func(t *testing.T) {
			var a answer
			var dates dateCache
			keep, _, err := readAnswer(bufio.NewReaderSize(strings.NewReader(tt.raw), h1BufSize), "GET", &a, &dates)
			if tt.keep == "" {
				if err == nil {
					t.Fatalf("no error; status %d, body %q", a.status, a.body)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.status != tt.status || string(a.body) != tt.body || keep != (tt.keep == "keep") {
				t.Errorf("status %d, body %q, keep %v; want %d, %q, %s", a.status, a.body, keep, tt.status, tt.body, tt.keep)
			}
		})
	}
}

// TestReadAnswerHeaders: the headers the load test reads.
func TestReadAnswerHeaders(t *testing.T) {
	raw := "HTTP/1.1 429 Too Many Requests\r\ndate: Fri, 27 Nov 2026 10:00:00 GMT\r\nRETRY-AFTER: 3\r\nIdempotent-Replayed:  true \r\nContent-Length: 0\r\n\r\n"
	var a answer
	var dates dateCache
	if _, _, err := readAnswer(bufio.NewReader(strings.NewReader(raw)), "POST", &a, &dates); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if !a.date.Equal(want) || a.retryAfter != 3*time.Second || !a.replayed || a.body == nil || len(a.body) != 0 {
		t.Errorf("date %v, retry after %v, replayed %v, body %q; want %v, 3s, true, empty", a.date, a.retryAfter, a.replayed, a.body, want)
	}
}

// FuzzReadAnswer: never panics, never returns more than the limit, and an answer it
// reads with its body's length agrees with net/http's reading of the same bytes.
func FuzzReadAnswer(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s.raw))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a answer
		var dates dateCache
		_, _, err := readAnswer(bufio.NewReaderSize(strings.NewReader(string(b)), h1BufSize), "GET", &a, &dates)
		if err != nil {
			return
		}
		if a.status < 200 || a.status > 999 || len(a.body) > maxAnswer {
			t.Fatalf("accepted status %d with %d bytes from %q", a.status, len(a.body), b)
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(b))), nil)
		if err != nil || resp.StatusCode < 200 {
			return // net/http refuses it, or does not skip interim answers
		}
		body, err := io.ReadAll(resp.Body)
		if err == nil && (resp.StatusCode != a.status || string(body) != string(a.body)) {
			t.Fatalf("read %d %q from %q; net/http reads %d %q", a.status, a.body, b, resp.StatusCode, body)
		}
	})
}

func TestH1RequestCheck(t *testing.T) {
	for _, r := range []h1Request{
		{method: "GET", path: "/v1/skus/a b"},
		{method: "GET", path: "/v1/skus/a\r\nX: y"},
		{method: "POST", path: "/v1/sessions", auth: "tok\r\nX-Evil: 1"},
		{method: "POST", path: "/x", turnstile: "a\nb"},
		{method: "POST", path: "/x", idempotencyKey: "k\x7f"},
	} {
		if err := r.check(); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
	ok := h1Request{method: "POST", path: "/v1/skus/s/reservations", auth: "t", turnstile: "0.abc", idempotencyKey: "lt-1 0", body: []byte(`{}`)}
	if err := ok.check(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
}

// h1Server is a net/http server that counts its connections and echoes requests.
func h1Server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func mustPool(t *testing.T, url string, timeout time.Duration) *h1Pool {
	t.Helper()
	pools, ok := newH1Pools([]string{url}, 4, timeout)
	if !ok {
		t.Fatalf("no pool for %s", url)
	}
	t.Cleanup(pools[0].close)
	return pools[0]
}

// TestH1Pool drives net/http's server: requests as sent, answers as read, kept-alive
// connections reused, chunked bodies, a base URL's path.
func TestH1Pool(t *testing.T) {
	big := strings.Repeat("0123456789", 10_000) // written in chunks, without Content-Length
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/base/big" {
			for i := 0; i < len(big); i += 1000 {
				w.Write([]byte(big[i : i+1000]))
			}
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s|%s|%s|%s|%s|%s", r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"),
			r.Header.Get("Cf-Turnstile-Response"), r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type"), body)
	})
	p := mustPool(t, srv.URL+"/base/", time.Second)
	var dates dateCache
	for i := range 5 {
		var a answer
		r := h1Request{method: "POST", path: "/v1/skus/s/reservations", auth: "sess", turnstile: "tok", idempotencyKey: fmt.Sprint("k", i), body: []byte(`{"quantity":1}`)}
		if err := p.roundTrip(context.Background(), &r, &a, &dates); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`POST /base/v1/skus/s/reservations|Bearer sess|tok|k%d|application/json|{"quantity":1}`, i)
		if a.status != 201 || string(a.body) != want || !a.replayed || a.retryAfter != 2*time.Second || a.date.IsZero() {
			t.Fatalf("answer %d %q replayed %v retry %v date %v; want 201 %q", a.status, a.body, a.replayed, a.retryAfter, a.date, want)
		}
	}
	var a answer
	if err := p.roundTrip(context.Background(), &h1Request{method: "GET", path: "/big"}, &a, &dates); err != nil {
		t.Fatal(err)
	}
	if a.status != 200 || string(a.body) != big {
		t.Errorf("big answer: status %d, %d bytes, want 200, %d", a.status, len(a.body), len(big))
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for requests in sequence, want 1 kept alive", n)
	}
}

// TestH1PoolStale: a kept-alive connection the server closed is replaced, and a request
// that may be sent twice is sent again on the new one; one that may not fails.
func TestH1PoolStale(t *testing.T) {
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	})
	p := mustPool(t, srv.URL, time.Second)
	var dates dateCache
	for _, tt := range []struct {
		r      h1Request
		wantOK bool
	}{
		{h1Request{method: "GET", path: "/"}, true},
		{h1Request{method: "POST", path: "/", idempotencyKey: "k"}, true},
		{h1Request{method: "POST", path: "/"}, false},
	} {
		var a answer
		if err := p.roundTrip(context.Background(), &h1Request{method: "GET", path: "/"}, &a, &dates); err != nil {
			t.Fatal(err)
		}
		srv.CloseClientConnections() // the idle connection in the pool is now closed
		time.Sleep(10 * time.Millisecond)
		a = answer{}
		err := p.roundTrip(context.Background(), &tt.r, &a, &dates)
		if tt.wantOK && (err != nil || string(a.body) != "ok") {
			t.Errorf("%s with key %q: %v, body %q; want ok on a new connection", tt.r.method, tt.r.idempotencyKey, err, a.body)
		}
		if !tt.wantOK && err == nil {
			t.Errorf("%s without key: sent again after a closed connection", tt.r.method)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3: the first, and one for each request sent again", n)
	}
}

// TestH1PoolCancel: a request ends at its context's end and at its timeout, and its
// connection is not reused.
func TestH1PoolCancel(t *testing.T) {
	release := make(chan struct{})
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.Write([]byte("ok"))
	})
	defer close(release)
	p := mustPool(t, srv.URL, 200*time.Millisecond)
	var dates dateCache

	start := time.Now()
	var a answer
	err := p.roundTrip(context.Background(), &h1Request{method: "GET", path: "/hang"}, &a, &dates)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) > 5*time.Second {
		t.Errorf("hanging request: %v after %v, want a timeout after 200ms", err, time.Since(start))
	}

	p = mustPool(t, srv.URL, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err = p.roundTrip(ctx, &h1Request{method: "GET", path: "/hang"}, &a, &dates)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v, want context.Canceled", err)
	}
	if len(p.idle) != 0 {
		t.Errorf("%d idle connections after a cancelled request, want 0", len(p.idle))
	}
	a = answer{}
	if err := p.roundTrip(context.Background(), &h1Request{method: "GET", path: "/"}, &a, &dates); err != nil || string(a.body) != "ok" {
		t.Errorf("after the cancel: %v, %q", err, a.body)
	}
}

func TestNewH1Pools(t *testing.T) {
	for _, tt := range []struct {
		url, addr, host, prefix string
		ok                      bool
	}{
		{"http://127.0.0.1:8080", "127.0.0.1:8080", "127.0.0.1:8080", "", true},
		{"http://localhost", "localhost:80", "localhost", "", true},
		{"http://[::1]:9/api/", "[::1]:9", "[::1]:9", "/api", true},
		{"https://127.0.0.1:8443", "", "", "", false},
		{"http://u:p@127.0.0.1", "", "", "", false},
		{"http://127.0.0.1/?x=1", "", "", "", false},
	} {
		pools, ok := newH1Pools([]string{tt.url}, 1, 0)
		if ok != tt.ok {
			t.Errorf("%s: ok %v, want %v", tt.url, ok, tt.ok)
			continue
		}
		if ok && (pools[0].addr != tt.addr || pools[0].host != tt.host || pools[0].prefix != tt.prefix) {
			t.Errorf("%s: addr %q host %q prefix %q; want %q %q %q", tt.url, pools[0].addr, pools[0].host, pools[0].prefix, tt.addr, tt.host, tt.prefix)
		}
	}
}
