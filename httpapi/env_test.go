package httpapi_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/httpapi/openapitest"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
	"github.com/revenueguard/revguard/turnstile"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// env is a Server on the real embedded backends (journal, inproc inventory, SQLite
// ledger and sessions, the ledger writer, the fake Turnstile verifier), in a temporary
// folder, served on a real listener on 127.0.0.1.
type env struct {
	*client
	tb       testing.TB
	api      *httpapi.Server
	inv      *inproc.Inventory
	journal  *journal.Journal
	ledger   *sqlite.Ledger
	writer   *revguard.LedgerWriter
	clock    *revguardtest.Clock     // nil: the real clock
	verifier *turnstiletest.Server   // nil: bot check off
	admin    string                  // the admin token
	sessions revguard.Sessions       // the store behind the API
	ipLimit  *inproc.RateLimiter     // nil: off
	custLim  *inproc.RateLimiter     // nil: off
	srv      *httptest.Server        // the listener
	extra    func(s *httpapi.Server) // applied before Handler
}

// envOptions chooses what mustOpenEnv turns on.
type envOptions struct {
	botCheck     bool                                         // a turnstile.BotChecker against a fake verifier
	clock        bool                                         // an injected clock shared by the inventory and the API
	customerRate revguard.Rate                                // zero: off
	ipRate       revguard.Rate                                // zero: off
	noSync       bool                                         // journal without fsync (benchmarks of the gateway alone)
	botTimeout   time.Duration                                // per verifier attempt; 0: 500 ms
	onFlush      func(events, bytes int, fsync time.Duration) // the journal's group-commit hook
	noLedger     bool                                         // no ledger writer (benchmarks of the hot path alone)
	edit         func(*httpapi.Server)
}

// mustOpenEnv opens every backend and the server; everything is closed at cleanup.
func mustOpenEnv(tb testing.TB, o envOptions) *env {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	e := &env{tb: tb}
	now := time.Now
	if o.clock {
		e.clock = revguardtest.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
		now = e.clock.Now
	}

	e.journal = journal.New(filepath.Join(dir, "journal"))
	e.journal.NoSync = o.noSync
	e.journal.OnFlush = o.onFlush
	if err := e.journal.Open(ctx); err != nil {
		tb.Fatalf("open journal: %v", err)
	}
	tb.Cleanup(func() { e.journal.Close() })

	e.inv = inproc.NewInventory(e.journal, filepath.Join(dir, "snapshots"))
	e.inv.Now = now
	if err := e.inv.Open(ctx); err != nil {
		tb.Fatalf("open inventory: %v", err)
	}
	tb.Cleanup(func() { e.inv.Close() })

	db := sqlite.NewDB(filepath.Join(dir, "revguard.db"))
	db.Now = now
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(ctx); err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	e.ledger = sqlite.NewLedger(db)
	// Sessions as the server keeps them: the SQLite store behind the in-memory cache.
	cache := inproc.NewSessionCache(sqlite.NewSessions(db))
	cache.Now = now
	tb.Cleanup(func() { cache.Close() })
	e.sessions = cache

	// The ledger writer follows the journal until cleanup cancels it.
	e.writer = &revguard.LedgerWriter{Feed: e.journal, Ledger: e.ledger}
	if !o.noLedger {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.writer.Run(wctx)
		}()
		tb.Cleanup(func() { cancel(); <-done })
	}

	api := httpapi.NewServer()
	api.Inventory = e.inv
	api.Ledger = e.ledger
	api.Sessions = e.sessions
	api.Now = now
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
		e.custLim = inproc.NewRateLimiter(o.customerRate)
		e.custLim.Now = now
		api.CustomerLimiter = e.custLim
	}
	if !o.ipRate.Off() {
		e.ipLimit = inproc.NewRateLimiter(o.ipRate)
		e.ipLimit.Now = now
		api.IPLimiter = e.ipLimit
	}
	if o.edit != nil {
		o.edit(api)
	}
	e.api = api
	e.srv = httptest.NewServer(api.Handler())
	tb.Cleanup(e.srv.Close)
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

// waitLedger waits until the ledger has applied every event the journal holds.
func (e *env) waitLedger() {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.writer.WaitApplied(ctx, e.journal.Durable()); err != nil {
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
