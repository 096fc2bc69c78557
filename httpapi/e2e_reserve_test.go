package httpapi_test

import (
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// The reserve endpoint end to end: every error code in docs/api.md's order of checks, the
// bot check against the fake verifier, idempotency and rate limits.

// tokenHeader returns a fresh, valid Turnstile token header.
func (e *env) tokenHeader() map[string]string {
	return map[string]string{"CF-Turnstile-Response": e.verifier.Token()}
}

func TestReserve(t *testing.T) { eachBackend(t, testReserve) }

func testReserve(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b, botCheck: true, clock: true})
	e.putSKU("shoe", `{"stock":3,"per_customer_limit":1,"hold_seconds":600}`)
	e.putSKU("many", `{"stock":10,"per_customer_limit":2}`)
	alice, bob, carol, dave := e.session("alice"), e.session("bob"), e.session("carol"), e.session("dave")

	t.Run("OK", func(t *testing.T) {
		e := e.with(t)
		r := e.reserve(alice, "shoe", ``, e.tokenHeader())
		var res reservation
		r.json(t, 201, &res)
		if r.Header.Get("Location") != "/v1/reservations/"+res.ID || res.ID == "" {
			t.Fatalf("Location %q for id %q", r.Header.Get("Location"), res.ID)
		}
		want := reservation{ID: res.ID, SKU: "shoe", CustomerID: "alice", Quantity: 1, Status: "held",
			CreatedAt: "2026-11-27T09:00:00Z", ExpiresAt: "2026-11-27T09:10:00Z"}
		if res != want {
			t.Fatalf("reservation %+v, want %+v", res, want)
		}
		if r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatal("a first reservation is marked replayed")
		}
		golden(t, "reservation_held", r.Body)
	})
	t.Run("TokenInBody", func(t *testing.T) {
		e := e.with(t)
		body := `{"quantity":1,"turnstile_token":"` + e.verifier.Token() + `"}`
		e.mustReserve(bob, "shoe", body, nil)
	})
	t.Run("HeaderWins", func(t *testing.T) {
		e := e.with(t)
		e.mustReserve(carol, "shoe", `{"turnstile_token":"forged"}`, e.tokenHeader())
		if s := e.checkInvariant("shoe"); s.Available != 0 || s.Held != 3 {
			t.Fatalf("after three holds: %+v", s)
		}
	})
	t.Run("ErrSoldOut", func(t *testing.T) {
		e := e.with(t)
		calls := e.verifier.Calls()
		r := e.reserve(dave, "shoe", ``, e.tokenHeader())
		r.wantProblem(t, 409, revguard.CodeSoldOut)
		golden(t, "problem_sold_out", r.Body)
		if got := e.verifier.Calls(); got != calls {
			t.Fatalf("a sold-out refusal spent %d bot checks", got-calls)
		}
		// Even without a token: sold out is refused before the bot check.
		e.reserve(dave, "shoe", ``, nil).wantProblem(t, 409, revguard.CodeSoldOut)
		// More than the available units is sold out too.
		e.reserve(dave, "many", `{"quantity":2}`, nil)
		e.checkInvariant("shoe")
	})
	t.Run("ErrLimitExceeded", func(t *testing.T) {
		e := e.with(t)
		tok := e.session("erin")
		e.mustReserve(tok, "many", `{"quantity":2}`, e.tokenHeader())
		r := e.reserve(tok, "many", `{"quantity":1}`, e.tokenHeader())
		r.wantProblem(t, 409, revguard.CodeLimitExceeded)
		golden(t, "problem_limit_exceeded", r.Body)
		e.checkInvariant("many")
	})
	t.Run("ErrInvalidRequest", func(t *testing.T) {
		e := e.with(t)
		before := e.checkInvariant("many")
		calls := e.verifier.Calls()
		for name, body := range map[string]string{
			"zero": `{"quantity":0}`, "over_limit": `{"quantity":3}`, "string": `{"quantity":"1"}`,
			"unknown": `{"quantity":1,"sku":"x"}`, "duplicate": `{"quantity":1,"quantity":1}`,
			"trailing": `{"quantity":1}]`, "array": `[{"quantity":1}]`,
		} {
			r := e.reserve(dave, "many", body, e.tokenHeader())
			p := r.wantProblem(t, 400, revguard.CodeInvalidRequest)
			if name == "over_limit" && !strings.Contains(p.Detail, "per_customer_limit (2)") {
				t.Fatalf("over the limit: %s", p.Detail)
			}
		}
		for _, key := range []string{strings.Repeat("k", 256), "caf\u00e9"} {
			e.reserve(dave, "many", ``, map[string]string{"Idempotency-Key": key}).wantProblem(t, 400, revguard.CodeInvalidRequest)
		}
		if got := e.verifier.Calls(); got != calls {
			t.Fatalf("malformed requests spent %d bot checks", got-calls)
		}
		if after := e.checkInvariant("many"); after != before {
			t.Fatalf("malformed requests changed the SKU: %+v -> %+v", before, after)
		}
	})
	t.Run("ErrOrderOfChecks", func(t *testing.T) {
		e := e.with(t)
		// Session before shape, shape before the SKU's existence.
		e.reserve("", "bad!sku", `{"quantity":0}`, nil).wantProblem(t, 401, revguard.CodeUnauthenticated)
		e.reserve(dave, "bad!sku", `{"quantity":1}`, nil).wantProblem(t, 400, revguard.CodeInvalidSKU)
		e.reserve(dave, "no-such-sku", `{"quantity":0}`, nil).wantProblem(t, 400, revguard.CodeInvalidRequest)
		r := e.reserve(dave, "no-such-sku", ``, nil)
		r.wantProblem(t, 404, revguard.CodeSKUNotFound)
		// A quantity above the SKU's limit is malformed whatever the state of the
		// sale: refused before "not open" and "sold out", which a retry could change.
		e.putSKU("tight", `{"stock":1,"per_customer_limit":2,"opens_at":"2026-11-27T09:00:00Z"}`)
		e.reserve(dave, "tight", `{"quantity":3}`, nil).wantProblem(t, 400, revguard.CodeInvalidRequest)
		e.reserve(dave, "tight", `{"quantity":2}`, nil).wantProblem(t, 409, revguard.CodeSoldOut)
		e.putSKU("tight", `{"stock":5,"per_customer_limit":2,"opens_at":"2030-01-01T00:00:00Z"}`)
		e.reserve(dave, "tight", `{"quantity":3}`, nil).wantProblem(t, 400, revguard.CodeInvalidRequest)
		e.reserve(dave, "tight", `{"quantity":2}`, nil).wantProblem(t, 409, revguard.CodeSaleNotOpen)
	})
	t.Run("ErrSaleNotOpen", func(t *testing.T) {
		e := e.with(t)
		// The opening has a fraction of a second, which the refusal names as it is.
		e.putSKU("later", `{"stock":5,"opens_at":"2026-11-27T09:30:00.25Z"}`)
		calls := e.verifier.Calls()
		r := e.reserve(dave, "later", ``, e.tokenHeader())
		r.wantProblem(t, 409, revguard.CodeSaleNotOpen)
		golden(t, "problem_sale_not_open", r.Body)
		if e.verifier.Calls() != calls {
			t.Fatal("a closed sale spent a bot check")
		}
		e.clock.Set(time.Date(2026, 11, 27, 9, 30, 0, 250e6-1, time.UTC))
		e.reserve(dave, "later", ``, e.tokenHeader()).wantProblem(t, 409, revguard.CodeSaleNotOpen)
		e.clock.Set(time.Date(2026, 11, 27, 9, 30, 0, 250e6, time.UTC))
		e.mustReserve(dave, "later", ``, e.tokenHeader())
	})
	t.Run("ErrBotCheckFailed", func(t *testing.T) {
		e := e.with(t)
		e.putSKU("bots", `{"stock":5}`)
		tok := e.session("frank")
		calls := e.verifier.Calls()
		r := e.reserve(tok, "bots", ``, nil)
		r.wantProblem(t, 403, revguard.CodeBotCheckFailed)
		golden(t, "problem_bot_check_failed", r.Body)
		if e.verifier.Calls() != calls {
			t.Fatal("a missing token reached the verifier")
		}
		e.reserve(tok, "bots", ``, map[string]string{"CF-Turnstile-Response": "forged-token"}).wantProblem(t, 403, revguard.CodeBotCheckFailed)
		used := e.verifier.Token()
		e.mustReserve(e.session("grace"), "bots", ``, map[string]string{"CF-Turnstile-Response": used})
		e.reserve(tok, "bots", ``, map[string]string{"CF-Turnstile-Response": used}).wantProblem(t, 403, revguard.CodeBotCheckFailed)
		if s := e.checkInvariant("bots"); s.Held != 1 {
			t.Fatalf("failed bot checks reserved: %+v", s)
		}
	})
	t.Run("ErrBotCheckUnavailable", func(t *testing.T) {
		e := e.with(t)
		e.putSKU("down", `{"stock":5}`)
		tok := e.session("heidi")
		for _, m := range []turnstiletest.Mode{turnstiletest.ModeRefuse, turnstiletest.ModeError, turnstiletest.ModeHang} {
			if err := e.verifier.SetMode(m); err != nil {
				t.Fatal(err)
			}
			r := e.reserve(tok, "down", ``, e.tokenHeader())
			r.wantProblem(t, 503, revguard.CodeBotCheckUnavailable)
			if got := r.Header.Get("Retry-After"); got != "1" {
				t.Errorf("verifier %v: 503 with Retry-After %q, want 1", m, got)
			}
			if m == turnstiletest.ModeRefuse {
				golden(t, "problem_bot_check_unavailable", r.Body)
			}
		}
		if err := e.verifier.SetMode(turnstiletest.ModeUp); err != nil {
			t.Fatal(err)
		}
		if s := e.checkInvariant("down"); s.Available != 5 {
			t.Fatalf("reserved while the verifier was down: %+v", s)
		}
		e.mustReserve(tok, "down", ``, e.tokenHeader())
	})
}

// TestClientGivesUp checks that a client that leaves while its reservation waits on the
// verifier leaves nothing behind: the check fails with the request's context, and
// nothing is reserved.
func TestClientGivesUp(t *testing.T) { eachBackend(t, testClientGivesUp) }

func testClientGivesUp(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b, botCheck: true})
	e.putSKU("leave", `{"stock":5}`)
	tok := e.session("leaver")
	if err := e.verifier.SetMode(turnstiletest.ModeHang); err != nil {
		t.Fatal(err)
	}
	hr, _ := http.NewRequest("POST", e.base+"/v1/skus/leave/reservations", nil)
	hr.Header.Set("Authorization", "Bearer "+tok)
	hr.Header.Set("CF-Turnstile-Response", e.verifier.Token())
	hc := *e.hc
	hc.Timeout = 200 * time.Millisecond
	if resp, err := hc.Do(hr); err == nil {
		resp.Body.Close()
		t.Fatalf("the client did not give up: %d", resp.StatusCode)
	}
	// Wait until the server has finished the abandoned request (its metrics are
	// recorded last), so that the verifier coming back cannot answer it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(e.do(req{Method: "GET", Path: "/metrics"}).Body), `route="POST /v1/skus/{sku}/reservations"`) {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned request never finished")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.verifier.SetMode(turnstiletest.ModeUp); err != nil {
		t.Fatal(err)
	}
	// The next request of the same customer succeeds and is the only hold.
	e.mustReserve(tok, "leave", ``, e.tokenHeader())
	if s := e.checkInvariant("leave"); s.Held != 1 {
		t.Fatalf("a request whose client left reserved: %+v", s)
	}
}

func TestIdempotency(t *testing.T) { eachBackend(t, testIdempotency) }

func testIdempotency(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b, botCheck: true})
	e.putSKU("idem", `{"stock":100,"per_customer_limit":50}`)
	e.putSKU("other", `{"stock":100,"per_customer_limit":50}`)
	alice, bob := e.session("alice"), e.session("bob")
	key := map[string]string{"Idempotency-Key": "order-123"}
	withKey := func(k string, tok bool) map[string]string {
		h := map[string]string{"Idempotency-Key": k}
		if tok {
			h["CF-Turnstile-Response"] = e.verifier.Token()
		}
		return h
	}

	first := e.reserve(alice, "idem", `{"quantity":2}`, withKey("order-123", true))
	var res reservation
	first.json(t, 201, &res)
	calls := e.verifier.Calls()

	t.Run("Replay", func(t *testing.T) {
		e := e.with(t)
		// No bot token at all: a replay needs none and spends none.
		r := e.reserve(alice, "idem", `{"quantity":2}`, key)
		if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(r.Body, first.Body) ||
			r.Header.Get("Location") != first.Header.Get("Location") {
			t.Fatalf("replay: %d %v %s, want the first answer %s", r.Status, r.Header, r.Body, first.Body)
		}
		if e.verifier.Calls() != calls {
			t.Fatal("a replay spent a bot check")
		}
		if s := e.checkInvariant("idem"); s.Held != 2 {
			t.Fatalf("a replay took stock: %+v", s)
		}
	})
	t.Run("ErrIdempotencyKeyReused", func(t *testing.T) {
		e := e.with(t)
		r := e.reserve(alice, "idem", `{"quantity":1}`, withKey("order-123", true))
		r.wantProblem(t, 422, revguard.CodeIdempotencyKeyReused)
		golden(t, "problem_idempotency_key_reused", r.Body)
		e.reserve(alice, "other", `{"quantity":2}`, withKey("order-123", true)).wantProblem(t, 422, revguard.CodeIdempotencyKeyReused)
		if s := e.checkInvariant("other"); s.Held != 0 {
			t.Fatalf("a reused key reserved: %+v", s)
		}
	})
	t.Run("ScopedToCustomer", func(t *testing.T) {
		e := e.with(t)
		var b reservation
		r := e.reserve(bob, "idem", `{"quantity":2}`, withKey("order-123", true))
		r.json(t, 201, &b)
		if b.ID == res.ID || r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("another customer's key replayed %s", b.ID)
		}
	})
	t.Run("FailureNotRemembered", func(t *testing.T) {
		e := e.with(t)
		e.putSKU("gone", `{"stock":0}`)
		e.reserve(alice, "gone", ``, withKey("retry-me", true)).wantProblem(t, 409, revguard.CodeSoldOut)
		e.putSKU("gone", `{"stock":1}`)
		r := e.reserve(alice, "gone", ``, withKey("retry-me", true))
		r.json(t, 201, &reservation{})
		if r.Header.Get("Idempotent-Replayed") != "" {
			t.Fatal("a retry after a refusal was marked replayed")
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		e := e.with(t)
		before := e.checkInvariant("idem")
		const n = 24
		var wg sync.WaitGroup
		answers := make([]*response, n)
		hdrs := make([]map[string]string, n)
		for i := range hdrs {
			hdrs[i] = withKey("concurrent-key", true)
		}
		for i := range n {
			wg.Go(func() { answers[i] = e.reserve(bob, "idem", `{"quantity":3}`, hdrs[i]) })
		}
		wg.Wait()
		var id string
		fresh := 0
		for _, r := range answers {
			var got reservation
			r.json(t, 201, &got)
			if id == "" {
				id = got.ID
			}
			if got.ID != id {
				t.Fatalf("concurrent requests with one key got two reservations: %s and %s", id, got.ID)
			}
			if r.Header.Get("Idempotent-Replayed") == "" {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("%d answers were not marked replayed, want exactly 1", fresh)
		}
		if after := e.checkInvariant("idem"); after.Held != before.Held+3 {
			t.Fatalf("one key held %d units, want 3", after.Held-before.Held)
		}
	})
}

// elsewhereFlights is an inventory of a fleet on which another node holds the mark of
// every idempotency key's first reserve and never ends it, as a node that hangs would.
type elsewhereFlights struct {
	revguard.Inventory
	claims, ttls atomic.Int64
}

func (f *elsewhereFlights) ClaimIdempotent(context.Context, string, string) (func(), bool, bool, error) {
	f.claims.Add(1)
	return nil, false, true, nil
}

func (f *elsewhereFlights) FlightTTL() time.Duration {
	f.ttls.Add(1)
	return 100 * time.Millisecond
}

// TestIdempotency_MarkElsewhere checks a request whose idempotency key's first reserve
// runs on another node that never finishes it: it waits for the mark (looking again
// and again), a little longer than a mark lasts, then answers 503 unavailable without
// spending its bot token or reserving.
func TestIdempotency_MarkElsewhere(t *testing.T) {
	var fl *elsewhereFlights
	e := mustOpenEnv(t, envOptions{botCheck: true, edit: func(s *httpapi.Server) {
		fl = &elsewhereFlights{Inventory: s.Inventory}
		s.Inventory = fl
	}})
	e.putSKU("idem", `{"stock":10}`)
	alice := e.session("alice")
	r := e.reserve(alice, "idem", `{"quantity":1}`,
		map[string]string{"Idempotency-Key": "k-hung", "CF-Turnstile-Response": e.verifier.Token()})
	p := r.wantProblem(t, 503, revguard.CodeUnavailable)
	if !strings.Contains(p.Detail, "another node") {
		t.Errorf("detail %q does not say the key is under way on another node", p.Detail)
	}
	// How long it waits is the store's mark's lifetime (and a second more).
	if f := fl.ttls.Load(); f == 0 {
		t.Error("the wait did not ask the store how long a mark lasts")
	}
	if n := fl.claims.Load(); n < 2 {
		t.Errorf("claimed the key %d times: it did not look again while waiting", n)
	}
	if n := e.verifier.Calls(); n != 0 {
		t.Errorf("%d bot checks: a request waiting for another node's spent its token", n)
	}
	if s := e.getSKU("idem"); s.Available != 10 || s.Held != 0 {
		t.Errorf("SKU after the 503: %+v, want untouched", s)
	}
}

func TestRateLimits(t *testing.T) { eachBackend(t, testRateLimits) }

func testRateLimits(t *testing.T, b backend) {
	t.Run("Customer", func(t *testing.T) {
		e := mustOpenEnv(t, envOptions{backend: b, botCheck: true, clock: true, customerRate: revguard.Rate{N: 2, Per: time.Minute}})
		e.putSKU("rl", `{"stock":10,"per_customer_limit":10}`)
		alice, bob := e.session("alice"), e.session("bob")
		e.mustReserve(alice, "rl", ``, e.tokenHeader())
		res := e.mustReserve(alice, "rl", ``, e.tokenHeader())
		calls := e.verifier.Calls()
		r := e.reserve(alice, "rl", ``, e.tokenHeader())
		r.wantProblem(t, 429, revguard.CodeRateLimited)
		golden(t, "problem_rate_limited", r.Body)
		if got := r.Header.Get("Retry-After"); got != "30" {
			t.Fatalf("Retry-After %q, want 30 (2/m refills one token every 30 s)", got)
		}
		if e.verifier.Calls() != calls {
			t.Fatal("a rate-limited request spent a bot check")
		}
		if s := e.checkInvariant("rl"); s.Held != 2 {
			t.Fatalf("a rate-limited request reserved: %+v", s)
		}
		// Confirm and release count against the same bucket; other customers do not.
		e.do(req{Method: "POST", Path: "/v1/reservations/" + res.ID + "/confirm", Token: alice}).wantProblem(t, 429, revguard.CodeRateLimited)
		e.mustReserve(bob, "rl", ``, e.tokenHeader())
		// The admin is never limited.
		e.do(req{Method: "POST", Path: "/v1/reservations/" + res.ID + "/release", Token: e.admin}).json(t, 200, &reservation{})
		e.clock.Advance(30 * time.Second)
		e.mustReserve(alice, "rl", ``, e.tokenHeader())
	})
	t.Run("IP", func(t *testing.T) {
		e := mustOpenEnv(t, envOptions{backend: b, clock: true, ipRate: revguard.Rate{N: 1, Per: time.Second}})
		e.putSKU("rl", `{"stock":10}`)
		e.mustReserve(e.session("alice"), "rl", ``, nil)
		r := e.reserve(e.session("bob"), "rl", ``, nil)
		r.wantProblem(t, 429, revguard.CodeRateLimited)
		if r.Header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q, want 1", r.Header.Get("Retry-After"))
		}
		// Every other request of that address draws on the same bucket: reads and logout
		// too. The admin (the merchant's backend) is exempt.
		carol := e.session("carol")
		for _, rq := range []req{
			{Method: "GET", Path: "/v1/skus/rl/availability"},
			{Method: "GET", Path: "/v1/me/reservations", Token: carol},
			{Method: "DELETE", Path: "/v1/sessions/current", Token: carol},
		} {
			e.do(rq).wantProblem(t, 429, revguard.CodeRateLimited)
		}
		// So do requests refused before the limits would run: no token or a bad one, a
		// customer on an admin endpoint, a path or method the API does not serve.
		// Reserve keeps its order of checks: the session first.
		for _, rq := range []req{
			{Method: "GET", Path: "/v1/orders", Token: "guess"},
			{Method: "GET", Path: "/v1/orders", Token: carol},
			{Method: "GET", Path: "/v1/me/reservations"},
			{Method: "GET", Path: "/v1/me/reservations", Header: map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}},
			{Method: "GET", Path: "/v1/nope"},
			{Method: "GET", Path: "/v1/./orders"},
			{Method: "GET", Path: "/dashboard/nope.js"},
			{Method: "POST", Path: "/v1/orders", Body: `{}`},
		} {
			r := e.do(rq)
			r.wantProblem(t, 429, revguard.CodeRateLimited)
			if r.Header.Get("Retry-After") == "" || r.Header.Get("WWW-Authenticate") != "" {
				t.Fatalf("%s %s: headers %v, want Retry-After and no challenge", rq.Method, rq.Path, r.Header)
			}
			if rq.Method == "POST" && r.Header.Get("Allow") != "GET, HEAD" {
				t.Fatalf("the 429 in place of a 405: Allow %q, want the 405's", r.Header.Get("Allow"))
			}
		}
		// Reserve checks the session first, on the lane (a bearer token) and on the
		// general path (none, or another scheme) alike.
		for _, rq := range []req{
			reservePost("guess", "rl", ``, nil),
			reservePost("", "rl", ``, nil),
			reservePost("", "rl", ``, map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}),
		} {
			r := e.do(rq)
			r.wantProblem(t, 401, revguard.CodeUnauthenticated)
			if r.Header.Get("Retry-After") != "" {
				t.Fatalf("a 401 with Retry-After %q", r.Header.Get("Retry-After"))
			}
		}
		// The admin is exempt everywhere; the health probes and the metrics are not
		// counted (docs/api.md).
		e.do(req{Method: "GET", Path: "/v1/skus/rl", Token: e.admin}).json(t, 200, &sku{})
		e.do(req{Method: "GET", Path: "/v1/nope", Token: e.admin}).wantProblem(t, 404, revguard.CodeNotFound)
		for _, path := range []string{"/healthz", "/metrics"} {
			if r := e.do(req{Method: "GET", Path: path}); r.Status != 200 {
				t.Fatalf("%s while the address is limited: %d", path, r.Status)
			}
		}
		e.clock.Advance(time.Second)
		e.do(req{Method: "GET", Path: "/v1/skus/rl/availability"}).json(t, 200, &struct {
			SKU       string  `json:"sku"`
			Available int64   `json:"available"`
			SoldOut   bool    `json:"sold_out"`
			OpensAt   *string `json:"opens_at"`
		}{})
	})
	t.Run("IP_Refused", func(t *testing.T) {
		// A refused request draws on its address's bucket before the limit is reached
		// too: one guessed token spends the one request a second of this address.
		for _, c := range []struct {
			rq     func(e *env) req
			status int
		}{
			{func(*env) req { return req{Method: "GET", Path: "/v1/orders", Token: "guess"} }, 401},
			{func(e *env) req { return req{Method: "GET", Path: "/v1/orders", Token: e.session("dave")} }, 403},
			{func(*env) req { return req{Method: "GET", Path: "/v1/nope"} }, 404},
			{func(*env) req { return req{Method: "POST", Path: "/v1/orders", Body: `{}`} }, 405},
			{func(*env) req { return reservePost("guess", "rl", ``, nil) }, 401},
			// A dashboard link's token elsewhere, and an expired one on its stream.
			{func(e *env) req {
				return req{Method: "GET", Path: "/v1/orders", Token: e.api.DashboardToken(e.clock.Now().Add(time.Minute))}
			}, 403},
			{func(e *env) req {
				return req{Method: "GET", Path: "/v1/dashboard/stream", Token: e.api.DashboardToken(e.clock.Now().Add(-time.Second))}
			}, 401},
			// Refused for its shape (400, 415), on every route; on reserve too,
			// where the shape comes before the limits.
			{func(*env) req { return req{Method: "GET", Path: "/v1/skus/a*b/availability"} }, 400},
			{func(*env) req {
				return req{Method: "GET", Path: "/v1/skus/rl/availability", Body: "x", Header: map[string]string{"Content-Type": "text/plain"}}
			}, 415},
			{func(e *env) req {
				return req{Method: "GET", Path: "/v1/me/reservations?foo=1", Token: e.session("dave")}
			}, 400},
			{func(e *env) req {
				return req{Method: "DELETE", Path: "/v1/sessions/current", Token: e.session("dave"), Body: `{"x":1}`}
			}, 400},
			{func(e *env) req {
				return req{Method: "POST", Path: "/v1/reservations/01JDQ0000000000000000000AA/confirm", Token: e.session("dave"), Body: `{"x":1}`}
			}, 400},
			{func(e *env) req { return reservePost(e.session("dave"), "rl", `{"quantity":"1"}`, nil) }, 400},
			{func(e *env) req { return reservePost(e.session("dave"), "a*b", ``, nil) }, 400},
		} {
			e := mustOpenEnv(t, envOptions{backend: b, clock: true, ipRate: revguard.Rate{N: 1, Per: time.Second}})
			rq := c.rq(e)
			if r := e.do(rq); r.Status != c.status {
				t.Fatalf("%s %s: %d, want %d", rq.Method, rq.Path, r.Status, c.status)
			}
			if r := e.do(req{Method: "GET", Path: "/v1/skus/rl/availability"}); r.Status != 429 {
				t.Fatalf("after %s %s (%d): %d %s, want 429", rq.Method, rq.Path, c.status, r.Status, r.Body)
			}
		}
	})
	t.Run("IP_IPv6Prefix", func(t *testing.T) {
		// An IPv6 client's bucket is its /64: stepping through its addresses does not
		// multiply the limit. (The test's loopback is the trusted proxy.)
		e := mustOpenEnv(t, envOptions{backend: b, clock: true, ipRate: revguard.Rate{N: 1, Per: time.Second},
			edit: func(s *httpapi.Server) { s.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }})
		e.do(req{Method: "PUT", Path: "/v1/skus/rl", Token: e.admin, Body: `{"stock":10}`}).json(t, 201, &sku{})
		from := func(ip string) *response {
			return e.do(req{Method: "GET", Path: "/v1/skus/rl/availability", Header: map[string]string{"X-Forwarded-For": ip}})
		}
		if r := from("2001:db8:1:2::1"); r.Status != 200 {
			t.Fatalf("first request of 2001:db8:1:2::/64: %d %s", r.Status, r.Body)
		}
		from("2001:db8:1:2:ffff::7").wantProblem(t, 429, revguard.CodeRateLimited)
		if r := from("2001:db8:1:3::1"); r.Status != 200 {
			t.Fatalf("first request of another /64: %d %s", r.Status, r.Body)
		}
		if r := from("192.0.2.1"); r.Status != 200 {
			t.Fatalf("an IPv4 client: %d %s", r.Status, r.Body)
		}
		from("192.0.2.1").wantProblem(t, 429, revguard.CodeRateLimited)
		if r := from("192.0.2.2"); r.Status != 200 { // IPv4 addresses stay each their own
			t.Fatalf("the next IPv4 address: %d %s", r.Status, r.Body)
		}
	})
	t.Run("IP_RefusedShape", func(t *testing.T) {
		e := mustOpenEnv(t, envOptions{backend: b, clock: true, ipRate: revguard.Rate{N: 2, Per: time.Second}})
		e.do(req{Method: "PUT", Path: "/v1/skus/rl", Token: e.admin, Body: `{"stock":10}`}).json(t, 201, &sku{})
		tok := e.session("erin")
		// Refused for its shape after drawing on the bucket (a cursor is checked
		// after the limits): counted once, not twice.
		e.do(req{Method: "GET", Path: "/v1/me/reservations?cursor=zz", Token: tok}).wantProblem(t, 400, revguard.CodeInvalidRequest)
		if r := e.do(req{Method: "GET", Path: "/v1/skus/rl/availability"}); r.Status != 200 {
			t.Fatalf("the second request of the second: %d %s", r.Status, r.Body)
		}
		// The bucket is empty: a malformed request gets 429 as well, but a reserve
		// keeps its 400 (its shape is checked before the limits).
		e.do(req{Method: "GET", Path: "/v1/skus/a*b/availability"}).wantProblem(t, 429, revguard.CodeRateLimited)
		e.do(reservePost(tok, "rl", `{"quantity":"1"}`, nil)).wantProblem(t, 400, revguard.CodeInvalidRequest)
		// The probes are left out of the limit, malformed or not.
		e.do(req{Method: "GET", Path: "/healthz", Body: "x", Header: map[string]string{"Content-Type": "text/plain"}}).wantProblem(t, 415, revguard.CodeUnsupportedMediaType)
		// The admin is exempt, malformed or not.
		e.do(req{Method: "GET", Path: "/v1/orders?foo=1", Token: e.admin}).wantProblem(t, 400, revguard.CodeInvalidRequest)
	})
}
