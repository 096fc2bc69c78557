package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// TestServe_Smoke walks a sale through the real binary's code path and a real
// listener, with the bot check on against the fake verifier, in each mode.
func TestServe_Smoke(t *testing.T) { eachMode(t, testServeSmoke) }

// TestServe_WrongTurnstileURL runs the binary against a verifier URL that answers 404
// (a typo in --turnstile-url): no reservation is made, and the buyer is told the check
// is unavailable (503, Retry-After), not that their token failed, which would send them
// to solve the challenge again for nothing.
func TestServe_WrongTurnstileURL(t *testing.T) {
	verifier := turnstiletest.New()
	if err := verifier.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(verifier.Close)
	srv := MustRunServer(t, t.TempDir(), nil,
		"--turnstile-secret", verifier.Secret, "--turnstile-url", verifier.URL()+"-typo")
	c := newClient(t, srv.URL, 1)
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/typo", testAdminToken, map[string]any{"stock": 3})
	token := c.mustSession(t, "c-typo")
	body := map[string]any{"quantity": 1}
	c.mustProblem(t, http.StatusServiceUnavailable, "bot_check_unavailable", "POST", "/v1/skus/typo/reservations", token,
		body, "CF-Turnstile-Response", verifier.Token())
	r := c.must(t, http.StatusServiceUnavailable, nil, "POST", "/v1/skus/typo/reservations", token,
		body, "CF-Turnstile-Response", verifier.Token())
	if got := r.Header.Get("Retry-After"); got == "" {
		t.Error("503 without Retry-After")
	}
	if got := verifier.Calls(); got != 0 {
		t.Errorf("the fake's siteverify path got %d calls through the wrong URL", got)
	}
	checkSKU(t, c, "typo", 3, 3, 0, 0)
}

func testServeSmoke(t *testing.T, m mode) {
	verifier := turnstiletest.New()
	if err := verifier.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(verifier.Close)
	srv := MustRunServer(t, t.TempDir(), nil, append(storeArgs(t, m),
		"--turnstile-secret", verifier.Secret, "--turnstile-url", verifier.URL())...)
	c := newClient(t, srv.URL, 4)

	var sku skuJSON
	c.must(t, http.StatusCreated, &sku, "PUT", "/v1/skus/drop-1", testAdminToken,
		map[string]any{"stock": 5, "per_customer_limit": 2, "hold_seconds": 600})
	if sku.SKU != "drop-1" || sku.Stock != 5 || sku.Available != 5 || sku.PerCustomerLimit != 2 || sku.OpensAt != nil {
		t.Fatalf("created SKU = %+v", sku)
	}
	c.must(t, http.StatusOK, &sku, "PUT", "/v1/skus/drop-1", testAdminToken,
		map[string]any{"stock": 6, "per_customer_limit": 2})
	token := c.mustSession(t, "c-42")

	// A reservation without a bot token is refused and spends nothing.
	c.mustProblem(t, http.StatusForbidden, "bot_check_failed", "POST", "/v1/skus/drop-1/reservations", token, map[string]any{"quantity": 1})
	bot := verifier.Token()
	var res reservationJSON
	r := c.must(t, http.StatusCreated, &res, "POST", "/v1/skus/drop-1/reservations", token,
		map[string]any{"quantity": 2}, "CF-Turnstile-Response", bot)
	if res.ID == "" || res.SKU != "drop-1" || res.CustomerID != "c-42" || res.Quantity != 2 || res.Status != "held" {
		t.Fatalf("reservation = %+v", res)
	}
	if loc := r.Header.Get("Location"); loc != "/v1/reservations/"+res.ID {
		t.Errorf("Location = %q, want /v1/reservations/%s", loc, res.ID)
	}
	if r.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
	// The bot token is single-use.
	c.mustProblem(t, http.StatusForbidden, "bot_check_failed", "POST", "/v1/skus/drop-1/reservations", token,
		map[string]any{"quantity": 1}, "CF-Turnstile-Response", bot)
	checkSKU(t, c, "drop-1", 6, 4, 2, 0)

	c.must(t, http.StatusOK, &res, "POST", "/v1/reservations/"+res.ID+"/confirm", token, map[string]any{"order_ref": "order-1"})
	if res.Status != "confirmed" || res.OrderRef == nil || *res.OrderRef != "order-1" || res.ConfirmedAt == nil {
		t.Fatalf("confirmed reservation = %+v", res)
	}
	checkSKU(t, c, "drop-1", 6, 4, 0, 2)
	// The public view may lag by up to a second.
	deadline := time.Now().Add(3 * time.Second)
	for {
		var avail struct {
			SKU       string `json:"sku"`
			Available int64  `json:"available"`
			SoldOut   bool   `json:"sold_out"`
		}
		c.must(t, http.StatusOK, &avail, "GET", "/v1/skus/drop-1/availability", "", nil)
		if avail.SKU == "drop-1" && avail.Available == 4 && !avail.SoldOut {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("availability = %+v, want 4 available", avail)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The ledger catches up with the confirmed reservation, once.
	items := c.waitLedger(t, "sku=drop-1", map[string]string{res.ID: "confirmed"})
	if *items[0].OrderRef != "order-1" || items[0].Quantity != 2 {
		t.Errorf("ledger item = %+v", items[0])
	}
	var mine pageJSON
	c.must(t, http.StatusOK, &mine, "GET", "/v1/me/reservations", token, nil)
	if len(mine.Items) != 1 || mine.Items[0].ID != res.ID {
		t.Errorf("my reservations = %+v", mine)
	}

	c.must(t, http.StatusOK, nil, "GET", "/healthz", "", nil)
	c.must(t, http.StatusOK, nil, "GET", "/readyz", "", nil)
	// A waiting room with one customer in it shows in the metrics.
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/drop-room", testAdminToken, map[string]any{"stock": 5})
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/drop-room/waiting-room", testAdminToken, map[string]any{"admit_per_second": 10})
	c.must(t, http.StatusCreated, nil, "POST", "/v1/skus/drop-room/waiting-room/place", token, nil, "CF-Turnstile-Response", verifier.Token())
	// In distributed mode the rooms are sampled once a second: the next sample shows it.
	var metrics *apiResponse
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		metrics = c.must(t, http.StatusOK, nil, "GET", "/metrics", "", nil)
		inRoom := 0.0
		for _, line := range strings.Split(string(metrics.Body), "\n") {
			if rest, ok := strings.CutPrefix(line, `revguard_waiting_room_customers{sku="drop-room",state="`); ok {
				_, v, _ := strings.Cut(rest, " ")
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("/metrics: %q", line)
				}
				inRoom += n
			}
		}
		if inRoom == 1 && strings.Contains(string(metrics.Body), "\n"+`revguard_waiting_room_sold_out{sku="drop-room"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics shows %v customers in drop-room's waiting room, want 1:\n%s", inRoom, metrics.Body)
		}
	}
	names := []string{"revguard_ledger_lag_events", "revguard_ledger_lag_seconds", "revguard_sessions_cached",
		"go_goroutines", "process_cpu_seconds_total"}
	if m == embeddedMode {
		names = append(names, "revguard_journal_batch_events", "revguard_journal_fsync_seconds", "revguard_skus", "revguard_holds",
			"revguard_changes_lag_events")
	} else {
		names = append(names, "revguard_redis_up", "revguard_postgres_up", "revguard_redis_rtt_seconds",
			"revguard_outbox_in_flight", "revguard_outbox_pending", "revguard_outbox_undelivered",
			"revguard_outbox_applied_events_total", "revguard_outbox_lag_seconds")
	}
	for _, name := range names {
		if !strings.Contains(string(metrics.Body), "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if m != embeddedMode {
		for _, name := range []string{"revguard_journal_", "revguard_skus", "revguard_holds"} {
			if strings.Contains(string(metrics.Body), "\n"+name) {
				t.Errorf("a distributed node's /metrics has the embedded mode's %s…", name)
			}
		}
	}

	// Log out: the token is refused at once.
	c.must(t, http.StatusNoContent, nil, "DELETE", "/v1/sessions/current", token, nil)
	c.mustProblem(t, http.StatusUnauthorized, "unauthenticated", "GET", "/v1/me/reservations", token, nil)
	c.mustProblem(t, http.StatusUnauthorized, "unauthenticated", "GET", "/v1/reservations/"+res.ID, token, nil)
}

// TestServe_GeneratedAdminToken checks that without --admin-token a token is generated,
// printed once, and works; and that running without a bot check is announced loudly.
func TestServe_GeneratedAdminToken(t *testing.T) {
	s, err := startServer(t.TempDir(), nil, []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()})
	if err != nil {
		t.Fatalf("start: %v\n%s", err, s.Log)
	}
	defer func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	log := s.Log.String()
	const prefix = "revguard: admin token (generated; shown only this once"
	if n := strings.Count(log, prefix); n != 1 {
		t.Fatalf("admin token line printed %d times:\n%s", n, log)
	}
	line := log[strings.Index(log, prefix):]
	line = line[:strings.IndexByte(line, '\n')]
	token := line[strings.LastIndex(line, " ")+1:]
	if len(token) < 32 || strings.Count(log, token) != 1 {
		t.Fatalf("generated token %q too short or repeated in the log:\n%s", token, log)
	}
	if !strings.Contains(log, "WARNING: BOT CHECK IS OFF") {
		t.Errorf("no loud warning about the bot check being off:\n%s", log)
	}
	c := newClient(t, s.URL, 1)
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/x", token, map[string]any{"stock": 1})
	c.mustProblem(t, http.StatusUnauthorized, "unauthenticated", "PUT", "/v1/skus/x", testAdminToken, map[string]any{"stock": 1})
}

// TestServe_EnvAndFlags checks that REVGUARD_* variables configure the server and that a
// flag wins over its variable.
func TestServe_EnvAndFlags(t *testing.T) {
	env := map[string]string{
		"REVGUARD_ADDR":          "not an address", // the flag below wins, else start fails
		"REVGUARD_ADMIN_TOKEN":   "env-admin-token-abcdef",
		"REVGUARD_RATE_LIMIT_IP": "2/m",
		"REVGUARD_DATA_DIR":      filepath.Join(t.TempDir(), "env-dir"),
	}
	dir := t.TempDir()
	s, err := startServer(dir, env, []string{"serve", "--addr", "127.0.0.1:0", "--rate-limit-customer", "off"})
	if err != nil {
		t.Fatalf("start: %v\n%s", err, s.Log)
	}
	defer s.Stop()
	c := newClient(t, s.URL, 1)
	const admin = "env-admin-token-abcdef" // from REVGUARD_ADMIN_TOKEN
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/x", admin, map[string]any{"stock": 10, "per_customer_limit": 10})
	token := c.mustSession(t, "c-env", admin)
	// REVGUARD_RATE_LIMIT_IP allows at most 2 requests a minute from this address: a 429
	// comes by the third reservation at the latest (sooner if every endpoint counts).
	limited := false
	for i := 0; i < 3 && !limited; i++ {
		r, err := c.do(t.Context(), "POST", "/v1/skus/x/reservations", token, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch r.Status {
		case http.StatusCreated:
		case http.StatusTooManyRequests:
			limited = true
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After: %s", r)
			}
		default:
			t.Fatalf("reservation %d: %s", i, r)
		}
	}
	if !limited {
		t.Error("REVGUARD_RATE_LIMIT_IP=2/m was not applied: 3 reservations in a row succeeded")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	// The data went to REVGUARD_DATA_DIR: no --data-dir flag was given.
	if m, _ := filepath.Glob(filepath.Join(env["REVGUARD_DATA_DIR"], "revguard.db")); len(m) != 1 {
		t.Errorf("no revguard.db under REVGUARD_DATA_DIR %s", env["REVGUARD_DATA_DIR"])
	}
}

// TestServe_InvalidConfig checks that bad configuration stops the start with exit code 2
// and a message naming the setting.
func TestServe_InvalidConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"RateFlag", []string{"--rate-limit-customer", "ten"}, nil, `invalid rate "ten"`},
		{"RateEnv", nil, map[string]string{"REVGUARD_RATE_LIMIT_IP": "100/h"}, "REVGUARD_RATE_LIMIT_IP"},
		{"TurnstileURL", []string{"--turnstile-url", "siteverify"}, nil, "--turnstile-url"},
		{"TrustedProxies", []string{"--trusted-proxies", "10.0.0.0/99"}, nil, "trusted-proxies"},
		{"Distributed", []string{"--postgres-url", "postgres://postgres@127.0.0.1:5432/test"}, nil, "distributed mode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir}, tt.args...)
			var stderr strings.Builder
			err := run(t.Context(), args, envMap(tt.env), &stderr, &stderr)
			if code := exitCode(err); code != exitUsage {
				t.Fatalf("exit code %d (err %v), want %d", code, err, exitUsage)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if m, _ := filepath.Glob(dir); len(m) != 0 {
				t.Errorf("an invalid configuration created the data dir %s", dir)
			}
		})
	}
}

// TestServe_Restart checks that a server restarted on the same data dir (the same
// Redis and PostgreSQL) keeps SKUs, reservations in their states, sessions and the
// ledger.
func TestServe_Restart(t *testing.T) { eachMode(t, testServeRestart) }

func testServeRestart(t *testing.T, m mode) {
	ctx := t.Context()
	dir := t.TempDir()
	stores := storeArgs(t, m)
	srv := MustRunServer(t, dir, nil, stores...)
	admin := newAdmin(t, srv.URL, 1)
	need(admin.PutSKU(ctx, "restart", client.SKUSettings{Stock: 10, PerCustomerLimit: 5}))(t)
	sess := need(admin.CreateSession(ctx, client.SessionParams{CustomerID: "c-restart"}))(t)
	buyer := admin.WithToken(sess.Token)
	want := map[string]string{}
	var ids []string
	for range 4 {
		res := need(buyer.Reserve(ctx, "restart", client.ReserveParams{}))(t)
		ids = append(ids, res.ID)
		want[res.ID] = "held"
	}
	need(buyer.Confirm(ctx, ids[0], client.ConfirmParams{}))(t)
	need(buyer.Release(ctx, ids[1]))(t)
	want[ids[0]], want[ids[1]] = "confirmed", "released"
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Log)
	}

	for restart := range 2 {
		srv = MustRunServer(t, dir, nil, stores...)
		c := newClient(t, srv.URL, 1)
		buyer := newAdmin(t, srv.URL, 1).WithToken(sess.Token)
		checkSKU(t, c, "restart", 10, 7, 2, 1)
		for _, id := range ids {
			res := need(buyer.GetReservation(ctx, id))(t) // the session survived too
			if string(res.Status) != want[id] {
				t.Errorf("restart %d: reservation %s is %s, want %s", restart, id, res.Status, want[id])
			}
		}
		c.waitLedger(t, "sku=restart", want)
		if err := srv.Stop(); err != nil {
			t.Fatalf("stop: %v\n%s", err, srv.Log)
		}
	}
}

// need returns a func that fails tb when err is not nil, and else returns v:
// need(c.Call(...))(t).
func need[T any](v T, err error) func(tb testing.TB) T {
	return func(tb testing.TB) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
}

// TestServe_RaceForStock is issue 3's race through HTTP: 2,000 customers race for 100
// units with 256 requests in flight. Exactly 100 holds, every other answer sold_out,
// exact counts, and the ledger converges to exactly the reserved ids (issue 4).
func TestServe_RaceForStock(t *testing.T) {
	const customers, stock, inFlight = 2000, 100, 256
	ctx := t.Context()
	srv := MustRunServer(t, t.TempDir(), nil)
	admin := newAdmin(t, srv.URL, inFlight)
	need(admin.PutSKU(ctx, "hot", client.SKUSettings{Stock: stock}))(t)

	start := time.Now()
	buyers := make([]*client.Client, customers)
	parallel(t, customers, 32, func(i int) error {
		s, err := admin.CreateSession(ctx, client.SessionParams{CustomerID: fmt.Sprintf("racer-%04d", i)})
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		buyers[i] = admin.WithToken(s.Token)
		return nil
	})

	t.Logf("%d sessions in %v", customers, time.Since(start))
	start = time.Now()
	var (
		mu       sync.Mutex
		reserved = map[string]string{} // id → customer
		soldOut  atomic.Int64
	)
	parallel(t, customers, inFlight, func(i int) error {
		res, err := buyers[i].Reserve(ctx, "hot", client.ReserveParams{})
		switch {
		case err == nil:
			if res.Status != "held" || res.Quantity != 1 {
				return fmt.Errorf("customer %d: bad reservation %+v", i, res)
			}
			mu.Lock()
			defer mu.Unlock()
			if _, dup := reserved[res.ID]; dup {
				return fmt.Errorf("reservation id %s issued twice", res.ID)
			}
			reserved[res.ID] = fmt.Sprintf("racer-%04d", i)
		case client.ErrorCode(err) == revguard.CodeSoldOut:
			soldOut.Add(1)
		default:
			return fmt.Errorf("customer %d: %w", i, err)
		}
		return nil
	})
	t.Logf("%d reservations in %v", customers, time.Since(start))
	if len(reserved) != stock || soldOut.Load() != customers-stock {
		t.Fatalf("%d reserved and %d sold out, want %d and %d", len(reserved), soldOut.Load(), stock, customers-stock)
	}
	checkSKU(t, newClient(t, srv.URL, 1), "hot", stock, 0, stock, 0)

	want := make(map[string]string, len(reserved))
	for id := range reserved {
		want[id] = "held"
	}
	var items []client.Reservation
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		items = items[:0]
		for r, err := range admin.AllOrders(ctx, client.OrderQuery{SKU: "hot", Limit: 1000}) {
			if err != nil {
				t.Fatal(err)
			}
			items = append(items, r)
		}
		if len(items) == stock || time.Now().After(deadline) {
			break
		}
	}
	if len(items) != stock {
		t.Fatalf("the ledger has %d reservations, want %d", len(items), stock)
	}
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		if seen[it.ID] {
			t.Errorf("ledger: reservation %s listed twice", it.ID)
		}
		seen[it.ID] = true
		if want[it.ID] != string(it.Status) || it.CustomerID != reserved[it.ID] {
			t.Errorf("ledger: reservation %s of %s is %s; the API said %s of %s", it.ID, it.CustomerID, it.Status, want[it.ID], reserved[it.ID])
		}
	}
}
