package main

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard/client"
)

// proxyMode is what a tcpProxy does with connections.
type proxyMode int

const (
	proxyUp    proxyMode = iota // forward
	proxyDown                   // refuse: close at once (the server is unreachable)
	proxyStall                  // accept and never answer (the server hangs)
)

// tcpProxy forwards loopback connections to a server, and can make it unreachable or
// hanging for the clients behind it: a fault injected between a node and Redis or
// PostgreSQL, which the shared test servers cannot be made to do.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	mode   proxyMode
	conns  map[net.Conn]bool // both ends of every open connection
	wg     sync.WaitGroup
}

// startProxy serves a proxy to target on 127.0.0.1 until the test ends.
func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	// The accept loop ends when Close closes the listener.
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr returns the proxy's host:port.
func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

// set changes the mode; any change closes every open connection, so that clients see
// the change at once and reconnect.
func (p *tcpProxy) set(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *tcpProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		m := p.mode
		p.mu.Unlock()
		if m == proxyDown || !p.track(in) {
			in.Close()
			continue
		}
		p.wg.Add(1)
		// Each connection's goroutine ends when either side closes or set/close closes it.
		go func() {
			defer p.wg.Done()
			defer p.untrack(in)
			if m == proxyStall {
				io.Copy(io.Discard, in)
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil || !p.track(out) {
				return
			}
			defer p.untrack(out)
			done := make(chan struct{})
			go func() { io.Copy(out, in); out.Close(); close(done) }() // ends with either side
			io.Copy(in, out)
			in.Close()
			<-done
		}()
	}
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// TestFleet_Outage: a node whose Redis or PostgreSQL is unreachable, or hangs, answers
// 503 unavailable with Retry-After (never a 500, never a partial change), /readyz names
// the store that is down, and the node recovers by itself when it is back. With
// PostgreSQL down, reservations go on (the ledger lags, then catches up).
func TestFleet_Outage(t *testing.T) {
	ctx := t.Context()
	stores := mustFleetStores(t)
	redisProxy := startProxy(t, hostOf(t, stores.redisURL))
	pgProxy := startProxy(t, hostOf(t, stores.postgresURL))
	proxied := *stores
	proxied.redisURL = strings.Replace(stores.redisURL, hostOf(t, stores.redisURL), redisProxy.Addr(), 1)
	proxied.postgresURL = strings.Replace(stores.postgresURL, hostOf(t, stores.postgresURL), pgProxy.Addr(), 1)
	srv := MustRunServer(t, t.TempDir(), nil, proxied.args()...)
	c := newClient(t, srv.URL, 4)
	admin := newAdmin(t, srv.URL, 4)
	need(admin.PutSKU(ctx, "out", client.SKUSettings{Stock: 100, PerCustomerLimit: 100}))(t)
	session := need(admin.CreateSession(ctx, client.SessionParams{CustomerID: "c-out"}))(t).Token
	buyer := admin.WithToken(session)
	want := map[string]string{}
	reserve := func() error {
		r, err := buyer.Reserve(ctx, "out", client.ReserveParams{})
		if err == nil {
			want[r.ID] = "held"
		}
		return err
	}
	if err := reserve(); err != nil {
		t.Fatal(err)
	}

	// unavailable checks that every kind of request is answered 503 with Retry-After
	// and that /readyz names store.
	unavailable := func(t *testing.T, store string) {
		t.Helper()
		var wg sync.WaitGroup // the requests wait for their timeouts together
		defer wg.Wait()
		for _, r := range []struct{ method, path, token string }{
			{"POST", "/v1/skus/out/reservations", ""},
			{"GET", "/v1/skus/out", testAdminToken},
			{"PUT", "/v1/skus/out", testAdminToken},
			{"GET", "/v1/skus/out/availability", ""},
		} {
			wg.Go(func() { checkUnavailable(t, c, r.method, r.path, r.token, session) })
		}
		resp, err := c.do(ctx, "GET", "/readyz", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(resp.Body), "not ready: "+store+" does not answer") {
			t.Fatalf("/readyz with %s down: %s", store, resp)
		}
		c.must(t, http.StatusOK, nil, "GET", "/healthz", "", nil)
	}
	recovers := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := reserve()
			if err == nil {
				break
			}
			if client.ErrorCode(err) != "unavailable" || time.Now().After(deadline) {
				t.Fatalf("after the store came back: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.must(t, http.StatusOK, nil, "GET", "/readyz", "", nil)
	}

	t.Run("RedisDown", func(t *testing.T) {
		redisProxy.set(proxyDown)
		unavailable(t, "redis")
		redisProxy.set(proxyUp)
		recovers(t)
	})
	t.Run("RedisHangs", func(t *testing.T) {
		// The metrics are the sampler's: a scrape does not wait for a hanging Redis
		// (docs/distributed.md), and shows the last reading, the rooms' too.
		need(admin.PutSKU(ctx, "out-room", client.SKUSettings{Stock: 5}))(t)
		need(admin.PutWaitingRoom(ctx, "out-room", client.WaitingRoomSettings{AdmitPerSecond: 10}))(t)
		const roomLine = "\n" + `revguard_waiting_room_sold_out{sku="out-room"} 0` + "\n"
		metricsUntil := func(what string, ok func(string) bool) string {
			t.Helper()
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				m := string(c.must(t, http.StatusOK, nil, "GET", "/metrics", "", nil).Body)
				if ok(m) {
					return m
				}
				if time.Now().After(deadline) {
					t.Fatalf("/metrics never showed %s:\n%s", what, m)
				}
			}
		}
		metricsUntil("the room", func(m string) bool { return strings.Contains(m, roomLine) })
		redisProxy.set(proxyStall)
		m := metricsUntil("Redis down", func(m string) bool { return strings.Contains(m, "\nrevguard_redis_up 0\n") })
		if !strings.Contains(m, roomLine) {
			t.Errorf("/metrics with Redis hanging lacks the room's last reading:\n%s", m)
		}
		start := time.Now()
		unavailable(t, "redis")
		t.Logf("the 503s of a hanging Redis took %v", time.Since(start))
		redisProxy.set(proxyUp)
		recovers(t)
	})
	t.Run("PostgresDown", func(t *testing.T) {
		pgProxy.set(proxyDown)
		// Reservations go on; the ledger waits.
		for range 3 {
			if err := reserve(); err != nil {
				t.Fatalf("reserve with PostgreSQL down: %v", err)
			}
		}
		c.mustProblem(t, http.StatusServiceUnavailable, "unavailable", "GET", "/v1/orders", testAdminToken, nil)
		resp, err := c.do(ctx, "GET", "/readyz", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusServiceUnavailable || !strings.Contains(string(resp.Body), "not ready: postgres does not answer") {
			t.Fatalf("/readyz with PostgreSQL down: %s", resp)
		}
		pgProxy.set(proxyUp)
		recovers(t)
	})
	// Nothing was half done: the counts are the acknowledged holds, and the ledger has
	// exactly them.
	checkSKU(t, c, "out", 100, int64(100-len(want)), int64(len(want)), 0)
	c.waitLedger(t, "sku=out", want)
	// The sampler notices the recovery within a second or so.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		m := string(c.must(t, http.StatusOK, nil, "GET", "/metrics", "", nil).Body)
		if strings.Contains(m, "\nrevguard_redis_up 1\n") && strings.Contains(m, "\nrevguard_postgres_up 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics does not report both stores up after the recovery:\n%s", m)
		}
	}
}

// hostOf returns the host:port of the URL u.
func hostOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		t.Fatalf("no host in %s", u)
	}
	return p.Host
}

// checkUnavailable sends one request and checks that it is answered 503 unavailable
// with a detail (and, as every 503, Retry-After); token "" means the customer session.
func checkUnavailable(t *testing.T, c *apiClient, method, path, token, session string) {
	var body any
	if method == "PUT" {
		body = map[string]any{"stock": 1}
	}
	if token == "" && method == "POST" {
		token = session
	}
	r, err := c.do(t.Context(), method, path, token, body)
	switch {
	case err != nil:
		t.Errorf("%s %s: %v", method, path, err)
	case r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), `"code":"unavailable"`):
		t.Errorf("%s %s: %s, want 503 unavailable with Retry-After", method, path, r)
	}
}
