package httpapi_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/httpapi/openapitest"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/internal/storetest"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
	"github.com/revenueguard/revguard/turnstile"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// env is a Server on real backends, served on a real listener on 127.0.0.1: the
// embedded ones (journal, inproc inventory, SQLite ledger and sessions, the ledger
// writer) in a temporary folder, or the distributed ones (the Redis inventory,
// sessions and rate limits, the PostgreSQL ledger, the outbox) in a Redis namespace
// and a PostgreSQL schema of the test's own; and the fake Turnstile verifier.
type env struct {
	*client
	tb       testing.TB
	backend  backend
	api      *httpapi.Server
	inv      revguard.Inventory
	room     revguard.WaitingRoom    // advanced by the tests (no timer); nil when the backend has none
	clock    *revguardtest.Clock     // nil: the real clock
	verifier *turnstiletest.Server   // nil: bot check off
	admin    string                  // the admin token
	sessions revguard.Sessions       // the store behind the API
	srv      *testServer             // the listener
	extra    func(s *httpapi.Server) // applied before Handler

	peak func() bool // the change writer's peak detector, with envOptions.changesPeak

	// waitApplied waits until the ledger has every change made so far.
	waitApplied func(ctx context.Context) error
}

// backend names the stores of an env.
type backend string

const (
	embedded    backend = "embedded"    // journal, inproc, SQLite: the default
	distributed backend = "distributed" // Redis and PostgreSQL (skipped without their test URLs)
)

// eachBackend runs test as a subtest on each backend: the end-to-end suites walk every
// endpoint and error code against an embedded server and a distributed node alike.
func eachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	for _, b := range []backend{embedded, distributed} {
		t.Run(string(b), func(t *testing.T) { test(t, b) })
	}
}

// envOptions chooses what mustOpenEnv turns on.
type envOptions struct {
	backend      backend                                      // "": embedded
	botCheck     bool                                         // a turnstile.BotChecker against a fake verifier
	clock        bool                                         // an injected clock shared by the stores and the API
	customerRate revguard.Rate                                // zero: off
	ipRate       revguard.Rate                                // zero: off
	noSync       bool                                         // embedded: journal without fsync (benchmarks of the gateway alone)
	botTimeout   time.Duration                                // per verifier attempt; 0: 500 ms
	onFlush      func(events, bytes int, fsync time.Duration) // embedded: the journal's group-commit hook
	noLedger     bool                                         // no ledger writer or outbox (benchmarks of the hot path alone)
	changes      bool                                         // the change log (event stream) and the webhook store
	changesPeak  bool                                         // the change writer defers at peaks, as in production
	edit         func(*httpapi.Server)
}

// envStores are the backends of an env.
type envStores struct {
	inv         revguard.Inventory
	ledger      revguard.Ledger
	sessions    revguard.Sessions
	room        revguard.WaitingRoom
	limiter     func(name string, r revguard.Rate) revguard.RateLimiter
	waitApplied func(ctx context.Context) error
	changes     revguard.ChangeReader // with envOptions.changes
	webhooks    revguard.Webhooks
	peak        func() bool // the change writer's, with envOptions.changesPeak
}

// mustOpenEnv opens every backend and the server; everything is closed at cleanup.
func mustOpenEnv(tb testing.TB, o envOptions) *env {
	tb.Helper()
	e := &env{tb: tb, backend: cmp.Or(o.backend, embedded)}
	now := time.Now
	if o.clock {
		e.clock = revguardtest.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
		now = e.clock.Now
	}
	var st envStores
	if e.backend == distributed {
		st = openDistributedStores(tb, o, now)
	} else {
		st = openEmbeddedStores(tb, o, now)
	}
	e.inv, e.sessions, e.waitApplied, e.room, e.peak = st.inv, st.sessions, st.waitApplied, st.room, st.peak

	api := httpapi.NewServer()
	api.Inventory = st.inv
	api.Ledger = st.ledger
	api.Sessions = st.sessions
	api.WaitingRoom = st.room
	api.Now = now
	if st.changes != nil {
		api.Changes, api.Webhooks = st.changes, st.webhooks
		api.Dashboard = &httpapi.Dashboard{Interval: 50 * time.Millisecond}
		switch inv := st.inv.(type) {
		case *inproc.Inventory:
			api.Dashboard.SKUs = inv.ForEachSKU
		case *redis.Inventory:
			api.Dashboard.SKUs = func(fn func(revguard.SKU) bool) { inv.ForEachSKU(context.Background(), fn) }
		}
	}
	e.admin = "admin-" + randomHex(16)
	api.AdminToken = e.admin
	if o.botCheck {
		e.verifier = turnstiletest.New()
		if err := e.verifier.Start(); err != nil {
			tb.Fatalf("start fake verifier: %v", err)
		}
		tb.Cleanup(e.verifier.Close)
		bc := turnstile.NewBotChecker(turnstiletest.DefaultSecret)
		bc.URL = e.verifier.URL()
		bc.Timeout = 500 * time.Millisecond
		if o.botTimeout > 0 {
			bc.Timeout = o.botTimeout
		}
		api.BotChecker = bc
	}
	if !o.customerRate.Off() {
		api.CustomerLimiter = st.limiter("customer", o.customerRate)
	}
	if !o.ipRate.Off() {
		api.IPLimiter = st.limiter("ip", o.ipRate)
	}
	if o.edit != nil {
		o.edit(api)
	}
	e.api = api
	e.srv = serveHTTP(tb, api)
	hc := e.srv.Client()
	hc.Timeout = 30 * time.Second
	if _, bench := tb.(*testing.B); !bench {
		// Every answer of the end-to-end tests must follow the OpenAPI document
		// (benchmarks measure the server, not the validator).
		openapitest.Wrap(hc)
	}
	e.client = &client{tb: tb, base: e.srv.URL, hc: hc}
	return e
}

// openEmbeddedStores opens the embedded backends in a temporary folder: the journal,
// the inproc inventory, SQLite's ledger and sessions behind the session cache, and
// the ledger writer.
func openEmbeddedStores(tb testing.TB, o envOptions, now func() time.Time) envStores {
	ctx := context.Background()
	dir := tb.TempDir()
	j := journal.New(filepath.Join(dir, "journal"))
	j.NoSync = o.noSync
	j.OnFlush = o.onFlush
	if err := j.Open(ctx); err != nil {
		tb.Fatalf("open journal: %v", err)
	}
	tb.Cleanup(func() { j.Close() })

	inv := inproc.NewInventory(j, filepath.Join(dir, "snapshots"))
	inv.Now = now
	if err := inv.Open(ctx); err != nil {
		tb.Fatalf("open inventory: %v", err)
	}
	tb.Cleanup(func() { inv.Close() })

	db := sqlite.NewDB(filepath.Join(dir, "revguard.db"))
	db.Now = now
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(ctx); err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	ledger := sqlite.NewLedger(db)
	// Sessions as the server keeps them: the SQLite store behind the in-memory cache.
	cache := inproc.NewSessionCache(sqlite.NewSessions(db))
	cache.Now = now
	tb.Cleanup(func() { cache.Close() })

	// The waiting room, without its timer: the tests advance it.
	room := inproc.NewWaitingRoom(sqlite.NewRoomLog(db), inv)
	room.Now, room.Tick = now, 0
	if err := room.Open(ctx); err != nil {
		tb.Fatalf("open waiting room: %v", err)
	}
	tb.Cleanup(func() { room.Close() })

	// The ledger writer follows the journal until cleanup cancels it.
	writer := &revguard.LedgerWriter{Feed: j, Ledger: ledger}
	if !o.noLedger {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			writer.Run(wctx)
		}()
		tb.Cleanup(func() { cancel(); <-done })
	}
	var changes *revguard.ChangeWriter
	var peak func() bool
	if o.changes {
		// The change writer follows the journal too, until cleanup cancels it. (The
		// journal is told that events are consumed only by the ledger writer: nothing
		// is compacted in these tests.)
		changes = &revguard.ChangeWriter{Feed: noConsume{j}, Log: sqlite.NewChangeLog(db), FirstSeq: j.FirstSeq}
		if o.changesPeak {
			changes.Peak = (&revguard.PeakDetector{Last: j.LastSeq, Applied: changes.JournalSeq, Window: 20 * time.Millisecond}).Peak
			peak = changes.Peak
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			changes.Run(cctx)
		}()
		tb.Cleanup(func() { cancel(); <-done })
	}
	st := envStores{
		inv: inv, ledger: ledger, sessions: cache, room: room,
		limiter: func(_ string, r revguard.Rate) revguard.RateLimiter {
			l := inproc.NewRateLimiter(r)
			l.Now = now
			return l
		},
		waitApplied: func(ctx context.Context) error { return writer.WaitApplied(ctx, j.Durable()) },
	}
	if changes != nil {
		st.changes, st.webhooks, st.peak = changes, sqlite.NewWebhooks(db), peak
	}
	return st
}

// noConsume is a second follower's view of a journal: it reads, and leaves the
// consumed position to the first.
type noConsume struct{ j *journal.Journal }

func (f noConsume) ReadEvents(ctx context.Context, after uint64, max int) ([]revguard.Event, error) {
	return f.j.ReadEvents(ctx, after, max)
}

func (noConsume) Consumed(uint64) {}

// openDistributedStores opens the distributed backends on the test servers
// (REVGUARD_TEST_REDIS_URL, REVGUARD_TEST_POSTGRES_URL; the test is skipped without
// them, or fails with REVGUARD_TEST_REQUIRE_ALL=1), in a Redis namespace and a
// PostgreSQL schema of its own, removed at cleanup: the Redis inventory (four shards,
// so that a test's SKUs spread over several), sessions and rate limits, the
// PostgreSQL ledger, and the outbox that copies the one into the other.
func openDistributedStores(tb testing.TB, o envOptions, now func() time.Time) envStores {
	redisURL, pgURL := storetest.RedisURL(tb), storetest.PostgresURL(tb)
	ns, schema := storetest.Namespace(tb, redisURL), storetest.Schema(tb, pgURL)
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	c, err := redis.Dial(ctx, redisURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })

	inv := redis.NewInventory(c)
	inv.Namespace, inv.Shards, inv.Logger = ns, 4, quiet
	if o.clock {
		inv.Now = now
	}
	if err := inv.Open(ctx); err != nil {
		tb.Fatalf("open inventory: %v", err)
	}
	tb.Cleanup(func() { inv.Close() })

	room := redis.NewWaitingRoom(inv)
	room.Tick = 0 // the tests advance it
	if err := room.Open(ctx); err != nil {
		tb.Fatalf("open waiting room: %v", err)
	}
	tb.Cleanup(func() { room.Close() })

	sess := redis.NewSessions(c)
	sess.Namespace, sess.Now, sess.Logger = ns, now, quiet
	sess.Timeout = 10 * time.Second // generous: a loaded machine under -race is slow
	if err := sess.Open(ctx); err != nil {
		tb.Fatalf("open sessions: %v", err)
	}
	tb.Cleanup(func() { sess.Close() })

	db := postgres.NewDB(pgURL)
	db.Schema, db.Logger = schema, quiet
	if err := db.Open(ctx); err != nil {
		tb.Fatalf("open PostgreSQL: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	ledger := postgres.NewLedger(db)

	// The outbox follows the streams until cleanup cancels it.
	outbox := redis.NewOutbox(c)
	outbox.Namespace, outbox.Logger, outbox.KeepChanges = ns, quiet, o.changes
	outbox.Block = 50 * time.Millisecond // a quick cleanup
	if !o.noLedger {
		octx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			outbox.Run(octx, ledger)
		}()
		tb.Cleanup(func() { cancel(); <-done })
	}
	var changes *postgres.ChangeFeed
	var webhooks revguard.Webhooks
	if o.changes {
		// One follower turns the streams into the change log, which the API serves
		// from a feed that polls it, as on a node that does not lead.
		f := redis.NewChangeFollower(c, postgres.NewChangeLog(db))
		f.Namespace, f.Poll, f.Logger = ns, 2*time.Millisecond, quiet
		changes = &postgres.ChangeFeed{Log: postgres.NewChangeLog(db), Poll: 10 * time.Millisecond, Logger: quiet}
		webhooks = postgres.NewWebhooks(db)
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { f.Run(cctx) })
		wg.Go(func() { changes.Run(cctx) })
		tb.Cleanup(func() { cancel(); wg.Wait() })
	}
	st := envStores{
		inv: inv, ledger: ledger, sessions: sess, room: room,
		limiter: func(name string, r revguard.Rate) revguard.RateLimiter {
			l := redis.NewRateLimiter(c, name, r)
			l.Namespace = ns
			l.Timeout = 10 * time.Second
			if o.clock {
				l.Now = now
			}
			return l
		},
		waitApplied: func(ctx context.Context) error {
			for {
				bl, err := outbox.Backlog(ctx)
				if err == nil && bl.Events() == 0 {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("outbox backlog %+v, %v: %w", bl, err, ctx.Err())
				case <-time.After(20 * time.Millisecond):
				}
			}
		},
	}
	if changes != nil {
		st.changes, st.webhooks = changes, webhooks
	}
	return st
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// putSKU creates or replaces a SKU through the API.
func (e *env) putSKU(id, body string) sku {
	e.tb.Helper()
	r := e.do(req{Method: "PUT", Path: "/v1/skus/" + id, Token: e.admin, Body: body})
	if r.Status != 200 && r.Status != 201 {
		e.tb.Fatalf("PUT sku %s: %d %s", id, r.Status, r.Body)
	}
	var s sku
	r.json(e.tb, r.Status, &s)
	return s
}

// getSKU returns the exact state of a SKU through the API.
func (e *env) getSKU(id string) sku {
	e.tb.Helper()
	var s sku
	e.do(req{Method: "GET", Path: "/v1/skus/" + id, Token: e.admin}).json(e.tb, 200, &s)
	return s
}

// session issues a session for customer through the API and returns its token.
func (e *env) session(customer string) string {
	e.tb.Helper()
	var out struct {
		Token      string `json:"token"`
		CustomerID string `json:"customer_id"`
		ExpiresAt  string `json:"expires_at"`
	}
	body := fmt.Sprintf(`{"customer_id":%q}`, customer)
	e.do(req{Method: "POST", Path: "/v1/sessions", Token: e.admin, Body: body}).json(e.tb, 201, &out)
	if out.Token == "" || out.CustomerID != customer {
		e.tb.Fatalf("session for %s: %+v", customer, out)
	}
	return out.Token
}

// reserve posts a reservation and returns the raw answer.
func (e *env) reserve(token, skuID, body string, hdr map[string]string) *response {
	e.tb.Helper()
	return e.do(req{Method: "POST", Path: "/v1/skus/" + skuID + "/reservations", Token: token, Body: body, Header: hdr})
}

// mustReserve reserves and decodes the 201.
func (e *env) mustReserve(token, skuID, body string, hdr map[string]string) reservation {
	e.tb.Helper()
	var res reservation
	e.reserve(token, skuID, body, hdr).json(e.tb, 201, &res)
	return res
}

// checkInvariant checks available + held + sold == stock, each non-negative.
func (e *env) checkInvariant(id string) sku {
	e.tb.Helper()
	s := e.getSKU(id)
	if s.Available < 0 || s.Held < 0 || s.Sold < 0 || s.Available+s.Held+s.Sold != s.Stock {
		e.tb.Fatalf("SKU %s breaks the invariant: %+v", id, s)
	}
	return s
}

// waitLedger waits until the ledger has every change made so far.
func (e *env) waitLedger() {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.waitApplied(ctx); err != nil {
		e.tb.Fatalf("ledger did not catch up: %v", err)
	}
}

// with returns a view of e whose helpers report to tb: a subtest or a fuzz input must
// not fail through its parent's testing.TB.
func (e *env) with(tb testing.TB) *env {
	c := *e
	cl := *e.client
	cl.tb = tb
	c.client = &cl
	c.tb = tb
	return &c
}

// testServer is the API served by the production HTTP server (httpapi.HTTPServer)
// on a loopback port, with the fields of an httptest.Server that the tests use.
type testServer struct {
	URL      string
	Listener net.Listener
	srv      *httpapi.HTTPServer
	client   *http.Client
	done     chan struct{} // closed when Serve has returned, with its error in err
	err      error
}

// serveHTTP serves api on a free loopback port until the test ends.
func serveHTTP(tb testing.TB, api *httpapi.Server) *testServer {
	return serveHTTPWith(tb, api, httpapi.HTTPConfig{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
}

// serveHTTPWith serves api with the limits of cfg on a free loopback port until the
// test ends, and then checks that it shuts down cleanly.
func serveHTTPWith(tb testing.TB, api *httpapi.Server, cfg httpapi.HTTPConfig) *testServer {
	tb.Helper()
	return serveHTTPServer(tb, api.NewHTTPServer(cfg))
}

// serveHTTPServer serves srv on a free loopback port until the test ends, and then
// checks that it shuts down cleanly.
func serveHTTPServer(tb testing.TB, srv *httpapi.HTTPServer) *testServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ts := &testServer{URL: "http://" + ln.Addr().String(), Listener: ln, srv: srv,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, done: make(chan struct{})}
	go func() {
		ts.err = ts.srv.Serve(ln)
		close(ts.done)
	}()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			tb.Errorf("HTTP server shutdown: %v", err)
			ts.srv.Close()
		}
		<-ts.done
		if ts.err != nil {
			tb.Errorf("HTTP server: %v", ts.err)
		}
		ts.client.CloseIdleConnections()
	})
	return ts
}

// Client returns the server's client, with a connection pool of its own.
func (ts *testServer) Client() *http.Client { return ts.client }

// dial opens a connection to the server, closed when the test ends, that fails any
// read or write after 10 s instead of hanging the test.
func (ts *testServer) dial(tb testing.TB) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}
