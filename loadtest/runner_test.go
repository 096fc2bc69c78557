package loadtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/revenueguard/revguard/loadtest"
)

// smallScenario is a sale of a second or two: enough customers to sell out, double
// clicks, bots, confirms, releases and abandoned holds.
func smallScenario() loadtest.Scenario {
	s := loadtest.DefaultScenario()
	s.Customers = 150
	s.Stock = 40
	s.HoldSeconds = 3 // releases and confirms land well before expiry, even on a slow machine
	s.Arrival = loadtest.ArrivalBurst
	s.Bots = 0.2
	s.Confirm, s.ConfirmDelay = 0.5, 20*time.Millisecond
	s.Release, s.ReleaseDelay = 0.2, 10*time.Millisecond
	s.Duration = 5 * time.Second
	s.Connections = 16
	s.Seed = 7
	return s
}

// mustRun runs s against shop and returns the report and its text.
func mustRun(t *testing.T, shop *fakeShop, s loadtest.Scenario) (*loadtest.Report, string) {
	t.Helper()
	url := MustStartFakeShop(t, shop)
	r := loadtest.NewRunner(s, shop.admin, url)
	r.Tokens = shop
	r.LedgerWait = 1500 * time.Millisecond
	r.SampleEvery = 20 * time.Millisecond
	rep, err := r.Run(t.Context())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return rep, b.String()
}

func check(rep *loadtest.Report, name string) loadtest.Check {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	return loadtest.Check{Name: name, Detail: "missing from the report"}
}

func TestRunner(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		rep, text := mustRun(t, &fakeShop{}, smallScenario())
		if err := rep.Err(); err != nil {
			t.Fatalf("a correct shop failed: %v\n%s", err, text)
		}
		sa := rep.Sale
		if sa.Reserved < 40 || sa.SoldOut == 0 || sa.Confirmed == 0 || sa.Released == 0 || sa.Bots != 30 {
			t.Errorf("the sale did not sell out with confirms, releases and bots: %+v\n%s", sa, text)
		}
		if rep.SKU == nil || rep.SKU.Sold != sa.Confirmed {
			t.Errorf("final sku %+v, confirmed %d", rep.SKU, sa.Confirmed)
		}
		if rep.Ledger == nil || rep.Ledger.Items != sa.Holds {
			t.Errorf("ledger %+v, holds %d", rep.Ledger, sa.Holds)
		}
		for _, c := range rep.Checks {
			// In a burst for scarce stock, bots may all come after the sell-out.
			if c.Skipped && c.Name != loadtest.CheckBots {
				t.Errorf("check %s skipped: %s", c.Name, c.Detail)
			}
		}
		if !strings.Contains(text, "PASS: all 8 checks") {
			t.Errorf("text report lacks the verdict:\n%s", text)
		}
		so := rep.SoldOut
		if so == nil || so.Before < 40 || so.Before+so.After != int64(sa.Attempts) || so.AtSeconds > rep.SaleSeconds ||
			!strings.Contains(text, fmt.Sprintf("first sold_out at %.1fs: %d reserves before it", so.AtSeconds, so.Before)) {
			t.Errorf("sold-out split %+v of %d attempts, at most %d before the first refusal:\n%s", so, sa.Attempts, sa.Attempts, text)
		}
		var b bytes.Buffer
		if err := rep.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		var back loadtest.Report
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Checks) != 8 || back.Sale != sa {
			t.Errorf("JSON report does not round-trip: %v", err)
		}
	})
	t.Run("OKPipelined", func(t *testing.T) {
		shop := &fakeShop{}
		url := MustStartFakeShop(t, shop)
		r := loadtest.NewRunner(smallScenario(), shop.admin, url)
		r.Tokens = shop
		r.LedgerWait = 1500 * time.Millisecond
		r.SampleEvery = 20 * time.Millisecond
		r.Pipeline = 2
		rep, err := r.Run(t.Context())
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if err := rep.Err(); err != nil {
			t.Fatalf("a correct shop failed through pipelined connections: %v", err)
		}
		if rep.Sale.Reserved < 40 || rep.Sale.SoldOut == 0 {
			t.Errorf("the pipelined sale did not sell out: %+v", rep.Sale)
		}
		// The crowd's requests shared two connections (plus the few of the setup and
		// the checks, which are pipelined too), not one per request in flight.
		if n := shop.conns.Load(); n > 4 {
			t.Errorf("%d connections for a pipelined sale over 2", n)
		}
	})
	// A burst's humans solve their challenges before the opening, as a drop's crowd
	// does on the page: every token of a first try is issued before the first click;
	// the humans of a ramp get theirs as they arrive.
	t.Run("TokensSolvedBeforeBurst", func(t *testing.T) {
		for _, arrival := range []loadtest.Arrival{loadtest.ArrivalBurst, loadtest.ArrivalRamp} {
			s := smallScenario()
			// A ramp long enough that a busy machine's late first click (a quarter
			// of it: 250 ms) does not see most tokens issued before it.
			s.Arrival, s.Ramp = arrival, time.Second
			shop := &fakeShop{}
			rep, text := mustRun(t, shop, s)
			if err := rep.Err(); err != nil {
				t.Fatalf("%s: a correct shop failed: %v\n%s", arrival, err, text)
			}
			shop.mu.Lock()
			before, all := shop.tokFirst, shop.ntok
			shop.mu.Unlock()
			switch {
			case arrival == loadtest.ArrivalBurst && (before != all || all < 100):
				t.Errorf("burst: %d of %d tokens issued before the first reservation, want all (at least 100)", before, all)
			case arrival == loadtest.ArrivalRamp && (before > all/4 || all < 100):
				// (A few: the first arrivals' workers issue them as the first click leaves.)
				t.Errorf("ramp: %d of %d tokens issued before the first reservation, want a few at most", before, all)
			}
		}
	})
	t.Run("OKPlentyOfStock", func(t *testing.T) {
		s := smallScenario()
		s.Stock, s.Limit, s.Quantity, s.OverLimit = 1000, 3, 2, 1 // attempts of 2, 2, 2 against a limit of 3
		s.HoldSeconds = 60                                        // no hold expires before a later attempt
		rep, text := mustRun(t, &fakeShop{}, s)
		if err := rep.Err(); err != nil {
			t.Fatalf("a correct shop failed: %v\n%s", err, text)
		}
		if !strings.Contains(text, "409 limit_exceeded") || rep.Sale.SoldOut != 0 || rep.Sale.Holds != 120 {
			t.Errorf("want one hold per human and the rest refused limit_exceeded:\n%s", text)
		}
		for _, c := range rep.Checks {
			if c.Skipped { // with stock for everyone, every bot meets the bot check
				t.Errorf("check %s skipped: %s", c.Name, c.Detail)
			}
		}
	})
	t.Run("OKNothingForSale", func(t *testing.T) {
		s := smallScenario()
		s.Stock = 0
		rep, text := mustRun(t, &fakeShop{}, s)
		if err := rep.Err(); err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if so := rep.SoldOut; so == nil || so.Before != 0 || so.After != int64(rep.Sale.Attempts) {
			t.Errorf("sold-out split %+v, want every one of %d attempts after the first refusal", so, rep.Sale.Attempts)
		}
		if rep.Sale.Holds != 0 || rep.Sale.SoldOut != rep.Sale.Attempts || rep.SaleSeconds > 4 {
			t.Errorf("want every attempt refused sold_out, quickly: %+v in %.1fs", rep.Sale, rep.SaleSeconds)
		}
		if c := check(rep, loadtest.CheckDemand); !strings.Contains(c.Detail, "reserved 0 units = min(demand 270, stock 0)") {
			t.Errorf("sold-to-demand: %s", c.Detail)
		}
	})
	t.Run("OKRetriedAfterLoadShedding", func(t *testing.T) {
		// The first 60 reservations are refused 503: each is tried again, with its
		// idempotency key, and the sale ends as if nothing happened.
		rep, text := mustRun(t, &fakeShop{shed: 60}, smallScenario())
		if err := rep.Err(); err != nil {
			t.Fatalf("a correct shop failed: %v\n%s", err, text)
		}
		var shed, humansShed, sent int64
		for _, o := range rep.Outcomes {
			if o.Op != "reserve" {
				continue
			}
			sent += o.Count
			if o.Status == 503 {
				shed += o.Count
				if !o.Bot {
					humansShed += o.Count
				}
			}
		}
		if sent != int64(rep.Sale.Attempts)+humansShed { // bots give up; humans try again, once
			t.Errorf("%d reservations sent for %d attempts and %d refused 503 to humans\n%s", sent, rep.Sale.Attempts, humansShed, text)
		}
		if shed != 60 || rep.Sale.Reserved < 40 || rep.Sale.Unresolved != 0 {
			t.Errorf("%d answers 503 (want 60), %d units reserved (want all 40 at least), %d unresolved (want 0)\n%s", shed, rep.Sale.Reserved, rep.Sale.Unresolved, text)
		}
	})
	t.Run("OKNetHTTPClient", func(t *testing.T) {
		// A given Runner.Client (as for https:// targets) carries the sale instead of
		// the minimal HTTP/1.1 client.
		shop := &fakeShop{}
		url := MustStartFakeShop(t, shop)
		var sent atomic.Int64
		tr := &http.Transport{MaxIdleConnsPerHost: 32}
		t.Cleanup(tr.CloseIdleConnections)
		r := loadtest.NewRunner(smallScenario(), shop.admin, url)
		r.Client = &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			sent.Add(1)
			return tr.RoundTrip(req)
		})}
		r.Tokens = shop
		r.LedgerWait = 1500 * time.Millisecond
		rep, err := r.Run(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.Err(); err != nil {
			t.Fatal(err)
		}
		if n := sent.Load(); n < int64(rep.Sale.Attempts) {
			t.Errorf("%d requests through the given client, fewer than the %d attempts", n, rep.Sale.Attempts)
		}
	})
	t.Run("OKExpiryResale", func(t *testing.T) {
		s := smallScenario()
		s.Customers, s.Stock, s.Bots = 100, 10, 0
		s.Arrival, s.Ramp, s.HoldSeconds = loadtest.ArrivalRamp, 2500*time.Millisecond, 1
		s.Confirm, s.Release = 0, 0 // every hold is abandoned and expires after a second
		rep, text := mustRun(t, &fakeShop{}, s)
		if err := rep.Err(); err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		// Nothing is confirmed or released: more than 10 units reserved means expired
		// units were sold again.
		if rep.Sale.Reserved <= 10 || rep.Sale.SoldOut == 0 {
			t.Errorf("want expired units sold again, and sold-out refusals: %+v\n%s", rep.Sale, text)
		}
	})
	plenty := func(s *loadtest.Scenario) { s.Stock = 1000 }
	// Each broken shop must fail the check that names its bug, with a clear line.
	for _, tc := range []struct {
		name  string
		shop  *fakeShop
		tweak func(*loadtest.Scenario)
		check string
		want  string
	}{
		{"ErrOversell", &fakeShop{oversell: true}, nil, loadtest.CheckOversell, "the stock is 40"},
		{"ErrLimit", &fakeShop{ignoreLimit: true}, plenty, loadtest.CheckLimit, "over the limit of 1"},
		{"ErrBotAdmitted", &fakeShop{admitBots: true}, plenty, loadtest.CheckBots, "bot attempts got a 201"},
		{"ErrLedgerLost", &fakeShop{loseOne: true}, nil, loadtest.CheckLedger, "1 acknowledged reservations missing"},
		{"ErrSoldOutWhileFree", &fakeShop{staleSoldOut: true}, nil, loadtest.CheckDemand, "sold_out refusals came while units were free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := smallScenario()
			if tc.tweak != nil {
				tc.tweak(&s)
			}
			rep, text := mustRun(t, tc.shop, s)
			c := check(rep, tc.check)
			if c.OK {
				t.Fatalf("check %s passed against a shop that breaks it:\n%s", tc.check, text)
			}
			if !strings.Contains(c.Detail, tc.want) {
				t.Errorf("check %s detail %q, want it to say %q", tc.check, c.Detail, tc.want)
			}
			t.Logf("%s: %s", c.Name, c.Detail)
			line := "FAIL: check " + tc.check + " broke: "
			if !strings.Contains(text, line) {
				t.Errorf("report lacks the line %q:\n%s", line, text)
			}
			if err := rep.Err(); err == nil || !strings.Contains(err.Error(), tc.check) {
				t.Errorf("Err() = %v, want it to name %s", err, tc.check)
			}
		})
	}
}

func TestRunnerErrSetup(t *testing.T) {
	shop := &fakeShop{}
	url := MustStartFakeShop(t, shop)
	r := loadtest.NewRunner(smallScenario(), "wrong-admin-token", url)
	if _, err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "create sku") {
		t.Fatalf("Run with a wrong admin token: %v, want a create sku error", err)
	}
	r = loadtest.NewRunner(smallScenario(), shop.admin, "http://127.0.0.1:1")
	if _, err := r.Run(t.Context()); err == nil {
		t.Fatal("Run against a closed port succeeded")
	}
}

// TestRunnerInterrupted: a run whose context ends during the sale returns promptly with
// the context's error, and leaves no goroutine behind.
func TestRunnerInterrupted(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) }) // after the shop closed
	shop := &fakeShop{}
	url := MustStartFakeShop(t, shop)
	s := smallScenario()
	s.Arrival, s.Ramp, s.Duration = loadtest.ArrivalRamp, 4*time.Second, 5*time.Second
	s.Bots = 0.5 // replaying bots wait for spent tokens off the workers
	r := loadtest.NewRunner(s, shop.admin, url)
	r.Tokens = shop
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(time.Second, cancel) // the sessions take far less; the ramp far more
	start := time.Now()
	_, err := r.Run(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "sale interrupted") {
		t.Errorf("Run: %v, want the sale interrupted by the cancel", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run returned %v after its start, want soon after the cancel at 1s", d)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
