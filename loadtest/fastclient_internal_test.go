package loadtest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// connServer is an httptest server on 127.0.0.1 that counts the connections it accepted.
type connServer struct {
	*httptest.Server
	conns atomic.Int64
}

func newConnServer(t *testing.T, h http.HandlerFunc) *connServer {
	t.Helper()
	cs := &connServer{}
	cs.Server = httptest.NewUnstartedServer(h)
	cs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			cs.conns.Add(1)
		}
	}
	cs.Start()
	t.Cleanup(cs.Close)
	return cs
}

// fastClient returns a client of the targets with the transport Run would give it.
func fastClient(t *testing.T, timeout time.Duration, targets ...string) *client {
	t.Helper()
	return pipeClient(t, 0, timeout, targets...)
}

// pipeClient is fastClient with requests pipelined over pipeline connections per
// target (none: fasthttp's HostClient).
func pipeClient(t *testing.T, pipeline int, timeout time.Duration, targets ...string) *client {
	t.Helper()
	c := &client{targets: targets, timeout: timeout, now: time.Now, pipeline: pipeline}
	t.Cleanup(c.useTransport(4))
	return c
}

// transports are the two http:// transports, for the tests that both must pass: one
// connection per request in flight, and one connection pipelined.
var transports = []struct {
	name     string
	pipeline int
}{{"HostClient", 0}, {"Pipelined", 1}}

func TestUseTransport(t *testing.T) {
	c := fastClient(t, time.Second, "http://127.0.0.1:1", "http://localhost:2/base")
	if c.fast == nil || c.http != nil {
		t.Fatalf("http:// targets: fast %v, http %v; want fasthttp only", c.fast, c.http)
	}
	hc := c.fast[1].hc
	if c.fast[1].host != "localhost:2" || c.fast[1].prefix != "/base" || hc.Addr != "localhost:2" {
		t.Fatalf("target 1: host %q prefix %q addr %q", c.fast[1].host, c.fast[1].prefix, hc.Addr)
	}
	if c := fastClient(t, time.Second, "http://127.0.0.1:1", "https://127.0.0.1:2"); c.fast != nil || c.http == nil {
		t.Fatalf("an https:// target: fast %v, http %v; want net/http only", c.fast, c.http)
	}
	given := &http.Client{}
	c = &client{targets: []string{"http://127.0.0.1:1"}, http: given}
	c.useTransport(4)()
	if c.fast != nil || c.http != given {
		t.Fatalf("a given client: fast %v, http %v; want the given one only", c.fast, c.http)
	}
}

// TestFastKeepAlive: sequential requests share one connection; the request carries the
// method, path, headers and body asked, and the answer's headers are read.
func TestFastKeepAlive(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testFastKeepAlive(t, tr.pipeline) })
	}
}

func testFastKeepAlive(t *testing.T, pipeline int) {
	date := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var seen []string
	srv := newConnServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, strings.Join([]string{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"),
			r.Header.Get("Idempotency-Key"), r.Header.Get("Cf-Turnstile-Response"), r.Header.Get("Content-Type"),
			r.UserAgent(), string(b)}, "|"))
		mu.Unlock()
		w.Header().Set("Date", date.Format(http.TimeFormat))
		w.Header()["retry-after"] = []string{"3"} // names are case-insensitive
		w.Header()["IDEMPOTENT-REPLAYED"] = []string{"true"}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"status":429,"code":"rate_limited","detail":"slow down"}`)
	})
	c := pipeClient(t, pipeline, 5*time.Second, srv.URL+"/base/")
	for range 20 {
		a := c.do(t.Context(), "POST", "/v1/skus/s/reservations?x=a%2Fb", "tok", headers{turnstile: "ts", idempotencyKey: "k1"}, []byte(`{"quantity":1}`))
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.status != 429 || a.code != "rate_limited" || a.detail != "slow down" || a.retryAfter != 3*time.Second || !a.replayed || !a.date.Equal(date) {
			t.Fatalf("answer %+v", a)
		}
	}
	if !c.serverNow().Equal(date) {
		t.Fatalf("server time %v, want %v", c.serverNow(), date)
	}
	want := "POST|/base/v1/skus/s/reservations?x=a%2Fb|Bearer tok|k1|ts|application/json|revguard-loadtest|{\"quantity\":1}"
	if seen[0] != want || seen[19] != want {
		t.Fatalf("server saw %q, want %q", seen[0], want)
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("%d connections for 20 sequential requests, want 1", n)
	}
	a := c.do(t.Context(), "GET", "/v1/orders", "", headers{}, nil)
	if a.err != nil || !strings.HasPrefix(seen[20], "GET|/base/v1/orders|||||revguard-loadtest|") {
		t.Fatalf("GET: %v, server saw %q", a.err, seen[20])
	}
}

// TestFastServerCloses: an answer with Connection: close is read and the next request
// dials again; a kept-alive connection the server dropped is replaced for a request
// that may be sent twice.
func TestFastServerCloses(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testFastServerCloses(t, tr.pipeline) })
	}
}

func testFastServerCloses(t *testing.T, pipeline int) {
	var closing atomic.Bool
	closing.Store(true)
	srv := newConnServer(t, func(w http.ResponseWriter, r *http.Request) {
		if closing.Load() {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "ok")
	})
	c := pipeClient(t, pipeline, 5*time.Second, srv.URL)
	for range 3 {
		if a := c.do(t.Context(), "POST", "/x", "", headers{}, nil); a.err != nil || a.status != 200 || string(a.body) != "ok" {
			t.Fatalf("answer %+v", a)
		}
	}
	if n := srv.conns.Load(); n != 3 {
		t.Fatalf("%d connections for 3 answers with Connection: close, want 3", n)
	}
	closing.Store(false)
	for _, h := range []headers{{}, {idempotencyKey: "k"}} {
		method := map[bool]string{true: "GET", false: "POST"}[h.idempotencyKey == ""]
		if a := c.do(t.Context(), method, "/x", "", h, nil); a.err != nil {
			t.Fatal(a.err)
		}
		srv.CloseClientConnections() // the kept-alive connection goes stale
		if a := c.do(t.Context(), method, "/x", "", h, nil); a.err != nil || string(a.body) != "ok" {
			t.Fatalf("%s after the server dropped the connection: %+v", method, a)
		}
	}
}

// TestFastChunked: a chunked answer is read whole, and its connection kept.
func TestFastChunked(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testFastChunked(t, tr.pipeline) })
	}
}

func testFastChunked(t *testing.T, pipeline int) {
	srv := newConnServer(t, func(w http.ResponseWriter, r *http.Request) {
		for _, part := range []string{`{"items":`, `[],`, `"next_cursor":null}`} {
			io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	})
	c := pipeClient(t, pipeline, 5*time.Second, srv.URL)
	for range 2 {
		a := c.do(t.Context(), "GET", "/v1/orders", "", headers{}, nil)
		if a.err != nil || string(a.body) != `{"items":[],"next_cursor":null}` {
			t.Fatalf("answer %+v, body %q", a, a.body)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("%d connections for 2 chunked answers, want 1", n)
	}
}

// TestFastTimeout: a request the server does not answer fails at the request timeout,
// or at ctx's deadline when that comes first; an answer too large fails too.
func TestFastTimeout(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testFastTimeout(t, tr.pipeline) })
	}
}

func testFastTimeout(t *testing.T, pipeline int) {
	// What each transport fails with: fasthttp's errors, or the connection's deadline
	// and errTooLarge when pipelined.
	var timeout, tooLarge error = fasthttp.ErrTimeout, fasthttp.ErrBodyTooLarge
	if pipeline > 0 {
		timeout, tooLarge = os.ErrDeadlineExceeded, errTooLarge
	}
	release := make(chan struct{})
	srv := newConnServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(make([]byte, maxAnswer+1))
			return
		}
		<-release
	})
	defer close(release) // before srv.Close, which waits for the handlers
	c := pipeClient(t, pipeline, 100*time.Millisecond, srv.URL)
	if a := c.do(t.Context(), "GET", "/slow", "", headers{}, nil); !errors.Is(a.err, timeout) {
		t.Fatalf("unanswered request: %+v, want %v", a, timeout)
	}
	c.fast[0].timeout = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if a := c.do(ctx, "GET", "/slow", "", headers{}, nil); !errors.Is(a.err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request past ctx's deadline: %+v, want context.DeadlineExceeded", a)
	}
	if a := c.do(ctx, "GET", "/slow", "", headers{}, nil); !errors.Is(a.err, context.DeadlineExceeded) {
		t.Fatalf("request under an ended ctx: %+v, want context.DeadlineExceeded", a)
	}
	if a := c.do(t.Context(), "GET", "/big", "", headers{}, nil); !errors.Is(a.err, tooLarge) {
		t.Fatalf("answer over %d bytes: %+v, want %v", maxAnswer, a, tooLarge)
	}
}

// TestFastRequestCheck: a control character that would split the request is refused
// before anything is sent.
func TestFastRequestCheck(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testFastRequestCheck(t, tr.pipeline) })
	}
}

func testFastRequestCheck(t *testing.T, pipeline int) {
	var hits atomic.Int64
	srv := newConnServer(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	c := pipeClient(t, pipeline, 5*time.Second, srv.URL)
	for _, tc := range []struct {
		path, token string
		h           headers
	}{
		{"/x\r\nX: y", "", headers{}},
		{"/x", "t\r\nX-Evil: 1", headers{}},
		{"/x", "", headers{turnstile: "a\nb"}},
		{"/x", "", headers{idempotencyKey: "k\x7f"}},
	} {
		if a := c.do(t.Context(), "GET", tc.path, tc.token, tc.h, nil); a.err == nil {
			t.Errorf("%q %q %+v: sent, want refused", tc.path, tc.token, tc.h)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("server got %d requests, want 0", n)
	}
}
