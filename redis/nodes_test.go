package redis_test

import (
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"
)

// twoNodes opens two Inventories ("nodes", each with its own client) on one
// namespace of the shared server; they use Redis's clock.
func twoNodes(t *testing.T, edit func(*redis.Inventory)) (a, b *redis.Inventory, ns string) {
	url := redisURL(t)
	ca, cb := MustDial(t, url), MustDial(t, url)
	ns = newNamespace(t, ca)
	return MustOpenInventory(t, ca, ns, edit), MustOpenInventory(t, cb, ns, edit), ns
}

func TestTwoNodes_SharedState(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	ctx := t.Context()
	if _, _, err := a.PutSKU(ctx, "n-1", revguard.SKUUpdate{Stock: 3, PerCustomerLimit: 2, HoldSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	if s, err := b.FindSKU(ctx, "n-1"); err != nil || s.Stock != 3 || s.Available != 3 {
		t.Fatalf("node b sees %+v, %v; want the SKU node a put", s, err)
	}
	r, _, err := b.Reserve(ctx, revguard.ReserveRequest{SKU: "n-1", CustomerID: "c1", Quantity: 2})
	if err != nil {
		t.Fatal(err)
	}
	if av, err := a.Availability(ctx, "n-1"); err != nil || av.Available != 1 {
		t.Fatalf("node a's availability %+v, %v; want 1 left", av, err)
	}
	if c, err := a.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "c1"}); err != nil || c.Status != revguard.StatusConfirmed {
		t.Fatalf("node a confirms node b's hold: %+v, %v", c, err)
	}
	if got, err := b.FindReservation(ctx, r.ID); err != nil || got.Status != revguard.StatusConfirmed {
		t.Fatalf("node b reads %+v, %v; want confirmed", got, err)
	}
}

func TestTwoNodes_NoOversell(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	ctx := t.Context()
	const stock, callers = 100, 400
	for _, id := range []string{"hot-1", "hot-2"} {
		if _, _, err := a.PutSKU(ctx, id, revguard.SKUUpdate{Stock: stock, PerCustomerLimit: 2, HoldSeconds: 600}); err != nil {
			t.Fatal(err)
		}
	}
	var held [2]atomic.Int64
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			node := []*redis.Inventory{a, b}[i%2]
			k := (i / 2) % 2
			r, _, err := node.Reserve(ctx, revguard.ReserveRequest{SKU: fmt.Sprintf("hot-%d", k+1),
				CustomerID: fmt.Sprintf("c%d", i%150), Quantity: 1 + int64(i%2)})
			switch code := revguard.ErrorCode(err); code {
			case "":
				held[k].Add(r.Quantity)
			case revguard.CodeSoldOut, revguard.CodeLimitExceeded:
			default:
				t.Errorf("Reserve: %v", err)
			}
		})
	}
	wg.Wait()
	for k, id := range []string{"hot-1", "hot-2"} {
		s, err := b.FindSKU(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		revguardtest.CheckSKU(t, s)
		if s.Held != held[k].Load() || s.Held > stock {
			t.Fatalf("%s: held %d, the callers were granted %d of a stock of %d", id, s.Held, held[k].Load(), stock)
		}
		if s.Available != 0 {
			t.Fatalf("%s: %d units left unsold with %d callers for %d units", id, s.Available, callers, stock)
		}
	}
}

func TestTwoNodes_IdempotencyKeyAcrossNodes(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	ctx := t.Context()
	for _, id := range []string{"i-1", "i-2"} {
		if _, _, err := a.PutSKU(ctx, id, revguard.SKUUpdate{Stock: 1000, PerCustomerLimit: 1000, HoldSeconds: 600}); err != nil {
			t.Fatal(err)
		}
	}
	first, _, err := a.Reserve(ctx, revguard.ReserveRequest{SKU: "i-1", CustomerID: "c1", Quantity: 1, IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Reserve(ctx, revguard.ReserveRequest{SKU: "i-2", CustomerID: "c1", Quantity: 1, IdempotencyKey: "k"})
	if revguard.ErrorCode(err) != revguard.CodeIdempotencyKeyReused {
		t.Fatalf("node b reuses node a's key on another SKU: %v, want idempotency_key_reused", err)
	}
	again, replayed, err := b.Reserve(ctx, revguard.ReserveRequest{SKU: "i-1", CustomerID: "c1", Quantity: 1, IdempotencyKey: "k"})
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("node b's retry = %s replayed %v, %v; want node a's %s replayed", again.ID, replayed, err, first.ID)
	}

	// The same key sent at once to both nodes for two SKUs: one of them wins, the other
	// is refused, whichever order the requests reach Redis in.
	const rounds = 30
	wins := 0
	for i := range rounds {
		key := fmt.Sprintf("race-%d", i)
		var wg sync.WaitGroup
		var errs [2]error
		for n, node := range []*redis.Inventory{a, b} {
			wg.Go(func() {
				_, _, errs[n] = node.Reserve(ctx, revguard.ReserveRequest{SKU: fmt.Sprintf("i-%d", n+1), CustomerID: "c2",
					Quantity: 1, IdempotencyKey: key})
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch revguard.ErrorCode(err) {
			case "":
				ok++
			case revguard.CodeIdempotencyKeyReused:
			default:
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d of 2 concurrent reserves with one key on two SKUs succeeded (%v), want 1", i, ok, errs)
		}
		wins++
	}
	s1, _ := a.FindSKU(ctx, "i-1")
	s2, _ := a.FindSKU(ctx, "i-2")
	if s1.Held+s2.Held != int64(wins)+1 {
		t.Fatalf("held %d + %d units, want %d", s1.Held, s2.Held, wins+1)
	}
}

func TestTwoNodes_ExpiryOnce(t *testing.T) {
	a, b, ns := twoNodes(t, func(inv *redis.Inventory) { inv.SweepInterval = 10 * time.Millisecond })
	ctx := t.Context()
	const holds = 60
	for i := range 3 {
		if _, _, err := a.PutSKU(ctx, fmt.Sprintf("e-%d", i), revguard.SKUUpdate{Stock: holds, PerCustomerLimit: holds, HoldSeconds: 1}); err != nil {
			t.Fatal(err)
		}
	}
	ids := make(map[string]bool)
	for i := range holds {
		node := []*redis.Inventory{a, b}[i%2]
		r, _, err := node.Reserve(ctx, revguard.ReserveRequest{SKU: fmt.Sprintf("e-%d", i%3), CustomerID: fmt.Sprintf("c%d", i), Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids[r.ID] = true
	}
	// Only the sweepers of the two nodes run: the test reads the counts directly.
	c := MustDial(t, redisURL(t))
	waitFor(t, "both sweepers to expire every hold", func() bool {
		for i := range 3 {
			id := fmt.Sprintf("e-%d", i)
			tag := fmt.Sprintf("{%s:%d}", ns, shardIndex(id))
			if c.HGet(ctx, tag+":sku:"+id, "held").Val() != "0" {
				return false
			}
		}
		return true
	})
	expired := make(map[string]int)
	for i := range redis.DefaultShards {
		entries, err := c.XRange(ctx, fmt.Sprintf("{%s:%d}:outbox", ns, i), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range entries {
			e, err := redis.DecodeEvent(m.Values)
			if err != nil {
				t.Fatal(err)
			}
			if e.Type == revguard.EventExpired {
				expired[e.ReservationID]++
			}
		}
	}
	if len(expired) != holds {
		t.Fatalf("%d holds journaled as expired, want %d", len(expired), holds)
	}
	for id, n := range expired {
		if n != 1 || !ids[id] {
			t.Fatalf("reservation %s journaled as expired %d times (made by the test: %v)", id, n, ids[id])
		}
	}
}

// shardIndex is the shard of a SKU id with the default 16 shards, as the package
// computes it (docs/distributed.md): crc32 IEEE mod 16.
func shardIndex(id string) int { return int(crc32.ChecksumIEEE([]byte(id)) % 16) }

func TestOpen_ErrShardsMismatch(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ns := newNamespace(t, c)
	MustOpenInventory(t, c, ns, func(inv *redis.Inventory) { inv.Shards = 4 })
	other := redis.NewInventory(c)
	other.Namespace, other.Shards = ns, 8
	if err := other.Open(t.Context()); err == nil {
		other.Close()
		t.Fatal("a node with 8 shards opened a namespace stored with 4")
	}
	other.Shards = 4 // a failed Open may be tried again
	if err := other.Open(t.Context()); err != nil {
		t.Fatalf("Open with the stored shard count after a failed Open: %v", err)
	}
	other.Close()
}
