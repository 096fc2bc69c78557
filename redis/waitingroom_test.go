package redis_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"
)

// TestWaitingRoom runs the conformance suite on the distributed room, over the Redis
// inventory of a namespace of its own, with four shards (a node without a timer).
func TestWaitingRoom(t *testing.T) {
	c := MustDial(t, redisURL(t))
	revguardtest.TestWaitingRoom(t, func(tb testing.TB, clock *revguardtest.Clock) (revguard.Inventory, revguard.WaitingRoom) {
		return mustOpenRoomNode(tb, c, newNamespace(tb, c), clock.Now)
	})
}

// mustOpenRoomNode opens a node of namespace ns: its inventory (four shards, on the
// clock now) and its room, without a timer (tests call Advance).
func mustOpenRoomNode(tb testing.TB, c goredis.UniversalClient, ns string, now func() time.Time) (*redis.Inventory, *redis.WaitingRoom) {
	inv := MustOpenInventory(tb, c, ns, func(inv *redis.Inventory) { inv.Now, inv.Shards = now, 4 })
	w := redis.NewWaitingRoom(inv)
	w.Tick = 0
	if err := w.Open(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close() })
	return inv, w
}

// TestWaitingRoom_TwoNodes checks that a room put on one node is enforced on another
// (within the refresh of its copy of the room set), and that the pace holds across
// nodes: both advancing at once admit no more than one node would.
func TestWaitingRoom_TwoNodes(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ctx := t.Context()
	ns := newNamespace(t, c)
	clock := revguardtest.NewClock(time.Time{})
	invA, a := mustOpenRoomNode(t, c, ns, clock.Now)
	_, b := mustOpenRoomNode(t, c, ns, clock.Now)
	if _, _, err := invA.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 100, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Claim(ctx, "s", "x"); ok || err != nil {
		t.Fatalf("Claim on B before any room = %v, %v", ok, err)
	}
	if _, _, err := a.PutRoom(ctx, "s", revguard.RoomSettings{AdmitPerSecond: 5}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := b.Claim(ctx, "s", "x")
		if revguard.ErrorCode(err) == revguard.CodeAdmissionRequired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B never enforced the room put on node A: %v", err)
		}
	}
	for i := range 20 {
		if _, _, err := b.Join(ctx, "s", fmt.Sprint("c-", i)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		for _, w := range []*redis.WaitingRoom{a, b} {
			if err := w.Advance(ctx, "s"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if r, err := a.FindRoom(ctx, "s"); err != nil || r.Admitted != 5 {
		t.Fatalf("after six advances by two nodes at one instant: %+v, %v; want 5 admitted (one second's pace)", r, err)
	}
	clock.Advance(time.Second)
	if err := b.Advance(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if r, _ := b.FindRoom(ctx, "s"); r.Admitted != 10 {
		t.Fatalf("a second later: %d admitted, want 10", r.Admitted)
	}
}

// TestWaitingRoom_StaleCopyBurst: a node whose copy of the room set predates a room
// put on another node, and that nothing refreshed since (no timer), gets a burst of
// concurrent claims. None may pass as "no room": every claim waits for a fresh copy
// and refuses the customer who was never admitted. (Letting all but one caller use the
// old copy let a burst through the room.)
func TestWaitingRoom_StaleCopyBurst(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ctx := t.Context()
	ns := newNamespace(t, c)
	invA, a := mustOpenRoomNode(t, c, ns, time.Now)
	_, b := mustOpenRoomNode(t, c, ns, time.Now)
	for round := range 5 {
		sku := fmt.Sprint("s", round)
		if _, _, err := invA.PutSKU(ctx, sku, revguard.SKUUpdate{Stock: 100, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
			t.Fatal(err)
		}
		// B reads the set before the room exists...
		if ok, err := b.Claim(ctx, sku, "x"); ok || err != nil {
			t.Fatalf("Claim on B before any room = %v, %v", ok, err)
		}
		if _, _, err := a.PutRoom(ctx, sku, revguard.RoomSettings{AdmitPerSecond: 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // ...and its copy is now too old to use
		const n = 32
		errs := make(chan error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				ok, err := b.Claim(ctx, sku, fmt.Sprint("never-joined-", i))
				if ok || revguard.ErrorCode(err) != revguard.CodeAdmissionRequired {
					errs <- fmt.Errorf("claim %d: %v, %v; want admission_required", i, ok, err)
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
	}
}

// BenchmarkDraw measures the draw of a pre-queue of 100,000 customers in Redis: the
// node reads the pre-queue, shuffles it and records the order in steps of 2,000
// customers (a script each), so that Redis serves other requests in between. Run it
// with -benchtime 1x.
func BenchmarkDraw(b *testing.B) {
	c := MustDial(b, redisURL(b))
	revguardtest.BenchmarkDraw(b, 100_000, func(b *testing.B, clock *revguardtest.Clock) (revguard.Inventory, revguard.WaitingRoom, func()) {
		inv := MustOpenInventory(b, c, newNamespace(b, c), func(inv *redis.Inventory) { inv.Now, inv.Shards = clock.Now, 4 })
		w := redis.NewWaitingRoom(inv)
		w.Tick = 0
		if err := w.Open(b.Context()); err != nil {
			b.Fatal(err)
		}
		return inv, w, func() { w.Close() }
	})
}

// TestWaitingRoom_UnsettledClaimLapses: a claim that no node settles (the node died
// between claim and settle) keeps its unit, and the customer's place admitted, until a
// grace of a minute past the admission's window; then it lapses like an unused
// admission: the place is expired, and its unit goes to the next in line.
func TestWaitingRoom_UnsettledClaimLapses(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ctx := t.Context()
	clock := revguardtest.NewClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
	inv := MustOpenInventory(t, c, newNamespace(t, c), func(inv *redis.Inventory) { inv.Now, inv.Shards = clock.Now, 4 })
	w := redis.NewWaitingRoom(inv)
	w.Tick = 0
	if err := w.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 1, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.PutRoom(ctx, "s", revguard.RoomSettings{AdmitPerSecond: 10, AdmissionSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	for _, cust := range []string{"a", "b"} {
		if _, _, err := w.Join(ctx, "s", cust); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Advance(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if ok, err := w.Claim(ctx, "s", "a"); !ok || err != nil {
		t.Fatalf("Claim(a) = %v, %v; want a claim", ok, err)
	}
	// Never settled. Past the window, within the grace: still claimed, its unit kept.
	clock.Advance(60 * time.Second)
	if err := w.Advance(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if p, err := w.FindPlace(ctx, "s", "a"); err != nil || p.Status != revguard.PlaceAdmitted {
		t.Fatalf("a's place within the grace = %+v, %v; want admitted", p, err)
	}
	if p, _ := w.FindPlace(ctx, "s", "b"); p.Status != revguard.PlaceWaiting {
		t.Fatalf("b's place while a's claim holds the unit = %+v; want waiting", p)
	}
	if _, err := w.Claim(ctx, "s", "a"); revguard.ErrorCode(err) != revguard.CodeAdmissionRequired {
		t.Fatalf("second Claim(a) within the grace = %v; want admission_required", err)
	}
	// Past the grace: lapsed, and the unit goes to b.
	clock.Advance(time.Minute)
	if err := w.Advance(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if p, err := w.FindPlace(ctx, "s", "a"); err != nil || p.Status != revguard.PlaceExpired {
		t.Fatalf("a's place after the grace = %+v, %v; want expired", p, err)
	}
	if _, err := w.Claim(ctx, "s", "a"); revguard.ErrorCode(err) != revguard.CodeAdmissionRequired {
		t.Fatalf("Claim(a) after the grace = %v; want admission_required", err)
	}
	if p, _ := w.FindPlace(ctx, "s", "b"); p.Status != revguard.PlaceAdmitted {
		t.Fatalf("b's place after a's claim lapsed = %+v; want admitted", p)
	}
}
