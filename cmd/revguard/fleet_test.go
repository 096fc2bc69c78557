package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// fleet is three `revguard serve` processes (the test binary run again) in distributed
// mode on one Redis namespace and one PostgreSQL schema, their bot check against one
// fake verifier on a fixed loopback address.
type fleet struct {
	stores       *fleetStores
	verifierAddr string
	verifier     *turnstiletest.Server
	stopVerifier func()
	nodes        []*child
	admins       []*client.Client // the test admin token, one per node
}

// startFleet starts the verifier and three nodes at once (they migrate the new schema
// together); node 3 is configured by REVGUARD_* variables, the others by flags.
func startFleet(t *testing.T) *fleet {
	t.Helper()
	f := &fleet{stores: mustFleetStores(t), verifierAddr: freeLoopbackAddr(t)}
	f.startVerifier(t)
	t.Cleanup(func() { f.stopVerifier() })
	args := []string{"serve", "--addr", "127.0.0.1:0", "--admin-token", testAdminToken,
		"--rate-limit-customer", "off", "--rate-limit-ip", "off", "--log-level", "info",
		"--turnstile-url", "http://" + f.verifierAddr + turnstiletest.Path, "--turnstile-secret", turnstiletest.DefaultSecret,
		"--outbox-min-idle", "2s"}
	f.nodes = make([]*child, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range f.nodes {
		wg.Go(func() {
			if i == 2 {
				f.nodes[i], errs[i] = startChild(args, true, f.stores.env()...)
			} else {
				f.nodes[i], errs[i] = startChild(append(args, f.stores.args()...), true)
			}
		})
	}
	wg.Wait()
	for i, n := range f.nodes {
		if n != nil {
			t.Cleanup(n.kill) // before the stores' cleanup, registered earlier
		}
		if errs[i] != nil {
			t.Fatalf("node %d: %v\n%s", i+1, errs[i], n.Log)
		}
		f.admins = append(f.admins, newAdmin(t, n.URL, 64))
	}
	return f
}

// startVerifier serves a fresh fake verifier on the fleet's verifier address.
func (f *fleet) startVerifier(t *testing.T) {
	t.Helper()
	v, stop, err := serveVerifier(f.verifierAddr)
	if err != nil {
		t.Fatal(err)
	}
	f.verifier, f.stopVerifier = v, stop
}

// TestFleet is issue 10's proof: three real nodes on loopback share one Redis and one
// PostgreSQL. A SKU created on one is visible on all; a session issued on one works on
// the others, and its logout reaches them within a second; a Turnstile token spent on
// one is refused on another; 2,000 buyers spread round-robin buy exactly the 100
// units, and the ledger holds exactly those; `revguard loadtest` drives the three;
// any node's dashboard counts the decisions of all three;
// one node SIGKILLed mid-sale: the others keep answering, nothing acknowledged is
// lost, nothing is oversold, the ledger converges and `revguard verify` is clean. A
// webhook registered on one node receives every change, signed, once each by id and
// in order, the same documents that another node's event stream shows; and when the
// node leading the change log is SIGKILLed, the last one takes over.
func TestFleet(t *testing.T) {
	ctx := t.Context()
	f := startFleet(t)
	changes := f.watchChanges(t)
	t.Run("MigratedOnce", func(t *testing.T) {
		var logs strings.Builder
		for _, n := range f.nodes {
			logs.WriteString(n.Log.String())
		}
		// One node applies each migration; the others find them applied.
		if n := strings.Count(logs.String(), `msg="postgres: applied migration"`); n != postgres.SchemaVersion {
			t.Errorf("three nodes starting at once applied %d migrations, want %d:\n%s", n, postgres.SchemaVersion, logs.String())
		}
		if !strings.Contains(logs.String(), "WARNING: ACKNOWLEDGED HOLDS CAN BE LOST") {
			t.Errorf("no loud warning about a Redis without appendfsync always:\n%s", logs.String())
		}
	})
	t.Run("SKUOnEveryNode", func(t *testing.T) {
		need(f.admins[0].PutSKU(ctx, "fleet-sku", client.SKUSettings{Stock: 5, PerCustomerLimit: 1}))(t)
		for i, a := range f.admins {
			if s := need(a.GetSKU(ctx, "fleet-sku"))(t); s.Stock != 5 || s.Available != 5 {
				t.Errorf("node %d: %+v", i+1, s)
			}
			if av := need(a.Availability(ctx, "fleet-sku"))(t); av.Available != 5 {
				t.Errorf("node %d availability: %+v", i+1, av)
			}
		}
	})
	t.Run("SessionAndTurnstileAcrossNodes", func(t *testing.T) {
		sess := need(f.admins[0].CreateSession(ctx, client.SessionParams{CustomerID: "c-roam"}))(t)
		other := need(f.admins[0].CreateSession(ctx, client.SessionParams{CustomerID: "c-other"}))(t)
		need(f.admins[1].WithToken(sess.Token).MyReservations(ctx, client.OrderQuery{}))(t)
		tok := f.verifier.Token()
		need(f.admins[0].WithToken(sess.Token).Reserve(ctx, "fleet-sku", client.ReserveParams{TurnstileToken: tok}))(t)
		_, err := f.admins[1].WithToken(other.Token).Reserve(ctx, "fleet-sku", client.ReserveParams{TurnstileToken: tok})
		if client.ErrorCode(err) != revguard.CodeBotCheckFailed {
			t.Fatalf("a token spent on node 1, replayed on node 2: %v, want bot_check_failed", err)
		}
	})
	t.Run("IdempotencyKeyAcrossNodes", func(t *testing.T) {
		// A double click split over the nodes: one key, one bot token, at once. One
		// check spends the token, one hold is made, every other request replays it.
		need(f.admins[0].PutSKU(ctx, "fleet-idem", client.SKUSettings{Stock: 5, PerCustomerLimit: 1}))(t)
		sess := need(f.admins[0].CreateSession(ctx, client.SessionParams{CustomerID: "c-double-click"}))(t)
		tok, calls := f.verifier.Token(), f.verifier.Calls()
		const n = 12
		type answer struct {
			id       string
			replayed bool
			err      error
		}
		answers := make([]answer, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				r, err := f.admins[i%len(f.admins)].WithToken(sess.Token).Reserve(ctx, "fleet-idem",
					client.ReserveParams{TurnstileToken: tok, IdempotencyKey: "k-double-click"})
				if err != nil {
					answers[i].err = err
					return
				}
				answers[i] = answer{id: r.ID, replayed: r.Meta.Replayed()}
			})
		}
		close(start)
		wg.Wait()
		fresh := 0
		for i, a := range answers {
			if a.err != nil || a.id != answers[0].id {
				t.Fatalf("request %d (node %d): reservation %q replayed %v, error %v; want the one reservation %s", i, i%len(f.admins)+1, a.id, a.replayed, a.err, answers[0].id)
			}
			if !a.replayed {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("%d answers not marked as replays, want 1", fresh)
		}
		if got := f.verifier.Calls() - calls; got != 1 {
			t.Errorf("%d bot checks for one key, want 1", got)
		}
		if s := need(f.admins[1].GetSKU(ctx, "fleet-idem"))(t); s.Held != 1 {
			t.Errorf("SKU after the double click: %+v, want 1 held", s)
		}
		// A refused first attempt, before the inventory (the bot check) or by it (sold
		// out), leaves the key free at once: the retry on another node does not wait
		// for the mark to expire (10 s; the retries have 5).
		need(f.admins[0].PutSKU(ctx, "fleet-idem-2", client.SKUSettings{Stock: 0, PerCustomerLimit: 1}))(t)
		buyer := func(node int) *client.Client { return f.admins[node].WithToken(sess.Token) }
		params := func(tok string) client.ReserveParams {
			return client.ReserveParams{TurnstileToken: tok, IdempotencyKey: "k-retry"}
		}
		if _, err := buyer(0).Reserve(ctx, "fleet-idem-2", params("forged")); client.ErrorCode(err) != revguard.CodeSoldOut {
			t.Fatalf("sold out: %v", err) // refused before the mark: the SKU is certainly sold out
		}
		need(f.admins[0].PutSKU(ctx, "fleet-idem-2", client.SKUSettings{Stock: 1, PerCustomerLimit: 1}))(t)
		if _, err := buyer(0).Reserve(ctx, "fleet-idem-2", params("forged")); client.ErrorCode(err) != revguard.CodeBotCheckFailed {
			t.Fatalf("a forged token: %v", err)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if r, err := buyer(1).Reserve(rctx, "fleet-idem-2", params(f.verifier.Token())); err != nil || r.Meta.Replayed() {
			t.Fatalf("the retry on node 2 after a 403 on node 1: %+v, %v", r, err)
		}
	})
	t.Run("LogoutReachesEveryNode", func(t *testing.T) {
		sess := need(f.admins[0].CreateSession(ctx, client.SessionParams{CustomerID: "c-leaving"}))(t)
		for _, a := range f.admins[1:] { // the session is now cached there
			need(a.WithToken(sess.Token).MyReservations(ctx, client.OrderQuery{}))(t)
		}
		if err := f.admins[0].WithToken(sess.Token).Logout(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Second)
		for i, a := range f.admins[1:] {
			for {
				_, err := a.WithToken(sess.Token).MyReservations(ctx, client.OrderQuery{})
				if client.ErrorCode(err) == revguard.CodeUnauthenticated {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %d still accepts the token a second after the logout on node 1: %v", i+2, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})

	buyers := f.sessions(t, 2000)
	t.Run("SaleRoundRobin", func(t *testing.T) { f.sale(t, buyers) })
	t.Run("DashboardChartsTheFleet", func(t *testing.T) {
		// Node 1's dashboard counts the decisions of all three nodes (each reports
		// its counters with its health), not the third it made itself.
		if got := dashboardTotals(t, f.nodes[0].URL, float64(len(buyers))); got < float64(len(buyers)) {
			t.Fatalf("node 1's dashboard shows %v decisions; the fleet made at least %d", got, len(buyers))
		}
	})
	t.Run("Loadtest", func(t *testing.T) {
		// The load generator runs its own fake verifier on the same address.
		f.stopVerifier()
		defer f.startVerifier(t)
		var targets []string
		for _, n := range f.nodes {
			targets = append(targets, n.URL)
		}
		stdout, stderr, err := runLoadtest(t, append(smallSale, "--target", strings.Join(targets, ","),
			"--admin-token", testAdminToken, "--fake-verifier", f.verifierAddr)...)
		if err != nil || !strings.Contains(stdout, "PASS: all 8 checks") {
			t.Fatalf("loadtest against three nodes: %v\n%s\n%s", err, stdout, stderr)
		}
	})
	t.Run("NodeKilledMidSale", func(t *testing.T) { f.killMidSale(t, buyers[:600]) })
	t.Run("ChangesAcrossNodes", func(t *testing.T) {
		changes.check(t, f.admins[0], []string{"fleet-sku", "fleet-drop", "fleet-kill"}, "fleet-drop", 100)
	})
	t.Run("ChangeLogLeaderKilled", func(t *testing.T) {
		// The node leading the change log and the webhooks is SIGKILLed; the last
		// one takes over, and a change made after reaches the webhook.
		changes.stop()
		leader := f.leaderIndex(t, []int{0, 2})
		last := 2 - leader
		before := len(f.nodes[last].Log.String())
		f.nodes[leader].kill()
		need(f.admins[last].PutSKU(ctx, "fleet-after", client.SKUSettings{Stock: 7}))(t)
		changes.check(t, f.admins[last], []string{"fleet-after"}, "fleet-drop", 100)
		if !strings.Contains(f.nodes[last].Log.String()[before:], "leading the change log") {
			t.Fatalf("node %d delivered without taking the lead after node %d died", last+1, leader+1)
		}
	})
}

// sessions issues n customer sessions, round-robin over the nodes, and returns their
// tokens.
func (f *fleet) sessions(t *testing.T, n int) []string {
	t.Helper()
	tokens := make([]string, n)
	parallel(t, n, 32, func(i int) error {
		s, err := f.admins[i%3].CreateSession(t.Context(), client.SessionParams{CustomerID: fmt.Sprintf("buyer-%04d", i)})
		if err != nil {
			return fmt.Errorf("session %d: %w", i, err)
		}
		tokens[i] = s.Token
		return nil
	})
	return tokens
}

// sale: every buyer reserves one of 100 units through node i mod 3, 256 requests in
// flight. Exactly 100 holds, every other answer sold_out, the counts exact on every
// node, and the ledger holds exactly the 100.
func (f *fleet) sale(t *testing.T, buyers []string) {
	ctx := t.Context()
	const stock = 100
	need(f.admins[0].PutSKU(ctx, "fleet-drop", client.SKUSettings{Stock: stock, PerCustomerLimit: 1}))(t)
	tokens := make([]string, len(buyers))
	for i := range tokens {
		tokens[i] = f.verifier.Token()
	}
	var (
		mu      sync.Mutex
		held    = map[string]string{}
		soldOut atomic.Int64
	)
	start := time.Now()
	parallel(t, len(buyers), 256, func(i int) error {
		res, err := f.admins[i%3].WithToken(buyers[i]).Reserve(ctx, "fleet-drop", client.ReserveParams{TurnstileToken: tokens[i]})
		switch {
		case err == nil:
			mu.Lock()
			defer mu.Unlock()
			if _, dup := held[res.ID]; dup {
				return fmt.Errorf("reservation %s issued twice", res.ID)
			}
			held[res.ID] = "held"
		case client.ErrorCode(err) == revguard.CodeSoldOut:
			soldOut.Add(1)
		default:
			return fmt.Errorf("buyer %d on node %d: %w", i, i%3+1, err)
		}
		return nil
	})
	t.Logf("%d reservations through three nodes in %v", len(buyers), time.Since(start))
	if len(held) != stock || soldOut.Load() != int64(len(buyers)-stock) {
		t.Fatalf("%d held and %d sold out, want %d and %d", len(held), soldOut.Load(), stock, len(buyers)-stock)
	}
	for _, n := range f.nodes {
		checkSKU(t, newClient(t, n.URL, 1), "fleet-drop", stock, 0, stock, 0)
	}
	newClient(t, f.nodes[2].URL, 1).waitLedger(t, "sku=fleet-drop", held)
}

// killMidSale: buyers reserve one of 200 units, round-robin over the nodes, with an
// idempotency key each, and half of the holds are confirmed through the next node.
// Node 2 is SIGKILLed once a third of the buyers have an answer; a request that loses
// its node is sent again, with the same key, to the next live one, as a load balancer
// would. Every buyer ends with a definite answer, and then: the two others kept
// answering, every acknowledged reservation is there in its acknowledged state, the
// counts add up and are exactly the acknowledged ones (nothing oversold), the ledger
// equals them once the outbox entries of the dead node are taken over, and `revguard
// verify` finds no difference.
func (f *fleet) killMidSale(t *testing.T, buyers []string) {
	ctx := t.Context()
	const stock = 200
	need(f.admins[0].PutSKU(ctx, "fleet-kill", client.SKUSettings{Stock: stock, PerCustomerLimit: 1}))(t)
	var (
		dead      atomic.Bool
		answered  atomic.Int64
		afterKill atomic.Int64
		killOnce  sync.Once
		mu        sync.Mutex
		acked     = map[string]string{} // id → held or confirmed
	)
	// call runs op on node i%3, or the next live node whenever the one it used died.
	call := func(i int, op func(a *client.Client) error) error {
		for k := range 3 {
			node := (i + k) % 3
			if node == 1 && dead.Load() {
				continue
			}
			err := op(f.admins[node])
			if _, api := errors.AsType[*client.Error](err); err == nil || api {
				if dead.Load() {
					afterKill.Add(1)
				}
				return err
			}
			if node != 1 || !dead.Load() {
				return fmt.Errorf("node %d: %w", node+1, err) // only node 2 may vanish
			}
		}
		return errors.New("no live node")
	}
	parallel(t, len(buyers), 48, func(i int) error {
		key := client.NewIdempotencyKey()
		var res *client.Reservation
		err := call(i, func(a *client.Client) (err error) {
			res, err = a.WithToken(buyers[i]).Reserve(ctx, "fleet-kill",
				client.ReserveParams{TurnstileToken: f.verifier.Token(), IdempotencyKey: key})
			return err
		})
		if answered.Add(1) == int64(len(buyers)/3) {
			killOnce.Do(func() { dead.Store(true); f.nodes[1].kill() }) // dead first: a request that node 2 fails must find it dead
		}
		switch {
		case client.ErrorCode(err) == revguard.CodeSoldOut:
			return nil
		case err != nil:
			return fmt.Errorf("buyer %d: %w", i, err)
		}
		mu.Lock()
		acked[res.ID] = "held"
		mu.Unlock()
		if i%2 == 1 {
			return nil
		}
		err = call(i+1, func(a *client.Client) error {
			_, err := a.WithToken(buyers[i]).Confirm(ctx, res.ID, client.ConfirmParams{OrderRef: "order-" + res.ID})
			return err
		})
		if err != nil {
			return fmt.Errorf("confirm of buyer %d: %w", i, err)
		}
		mu.Lock()
		acked[res.ID] = "confirmed"
		mu.Unlock()
		return nil
	})
	if !dead.Load() || afterKill.Load() == 0 {
		t.Fatalf("node 2 killed: %v; answers from the others after: %d", dead.Load(), afterKill.Load())
	}
	var held, sold int64
	for _, st := range acked {
		if st == "held" {
			held++
		} else {
			sold++
		}
	}
	t.Logf("%d holds and %d sales acknowledged, %d answers after the kill", held, sold, afterKill.Load())
	for _, n := range []*child{f.nodes[0], f.nodes[2]} {
		c := newClient(t, n.URL, 1)
		c.must(t, 200, nil, "GET", "/readyz", "", nil)
		checkSKU(t, c, "fleet-kill", stock, stock-held-sold, held, sold)
	}
	for id, st := range acked {
		if r := need(f.admins[0].GetReservation(ctx, id))(t); string(r.Status) != st {
			t.Errorf("reservation %s was acknowledged %s, is %s", id, st, r.Status)
		}
	}
	newClient(t, f.nodes[2].URL, 1).waitLedger(t, "sku=fleet-kill", acked)

	var stdout, stderr bytes.Buffer
	v := &VerifyCommand{Getenv: envMap(nil), Stdout: &stdout, Stderr: &stderr}
	if err := v.Run(ctx, append(f.stores.args(), "--wait", "30s")); err != nil || stdout.Len() != 0 {
		t.Fatalf("verify after the kill: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "ledger matches the engine") {
		t.Errorf("verify: %s", stderr.String())
	}
	stdout.Reset()
	e := &ExportCommand{Getenv: envMap(nil), Stdout: &stdout, Stderr: &stderr}
	if err := e.Run(ctx, []string{"--postgres-url", f.stores.postgresURL, "--postgres-schema", f.stores.schema,
		"--sku", "fleet-kill", "--format", "jsonl"}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(stdout.String(), "\n"); n != len(acked) {
		t.Errorf("export wrote %d reservations of fleet-kill, want %d", n, len(acked))
	}
}
