package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/storetest"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"
)

// fleetInventory opens an inventory of 4 shards on a namespace of the test's own on the
// test Redis, with clock as its clock, and returns it with its client.
func fleetInventory(t testing.TB, clock *revguardtest.Clock) (*redis.Inventory, goredis.UniversalClient, string) {
	t.Helper()
	url := storetest.RedisURL(t)
	ns := storetest.Namespace(t, url)
	client, err := redis.Dial(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	inv := redis.NewInventory(client)
	inv.Namespace, inv.Shards, inv.Now = ns, 4, clock.Now
	inv.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := inv.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inv.Close() })
	return inv, client, ns
}

// streamEnds returns the id of the last entry of each of the namespace's 4 outbox
// streams ("{<ns>:<shard>}:outbox", as redis/keys.go names them), by shard.
func streamEnds(t testing.TB, client goredis.UniversalClient, ns string) map[int]string {
	t.Helper()
	ends := make(map[int]string)
	for i := range 4 {
		msgs, err := client.XRevRangeN(t.Context(), fmt.Sprintf("{%s:%d}:outbox", ns, i), "+", "-", 1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 {
			ends[i] = msgs[0].ID
		}
	}
	return ends
}

// runFollower runs f until the test ends.
func runFollower(t testing.TB, f *redis.ChangeFollower) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitCaughtUp waits until the change log has read every stream to ends.
func waitCaughtUp(t testing.TB, l *postgres.ChangeLog, ends map[int]string) revguard.StreamChangeState {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, err := l.LoadStreamChangeState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		caught := true
		for shard, id := range ends {
			caught = caught && st.Positions[shard] == id
		}
		if caught {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the change log is at %v, the streams end at %v", st.Positions, ends)
		}
	}
}

// TestChangeFollower turns a real inventory's outbox into the change log with two
// followers at once (two nodes that both think they lead): every reservation's changes
// appear exactly once, seqs run from 1 without a gap, each change's counts follow from
// the one before it for its SKU, and the log's counts end equal to the inventory's.
func TestChangeFollower(t *testing.T) {
	ctx := t.Context()
	clock := revguardtest.NewClock(time.Now())
	inv, client, ns := fleetInventory(t, clock)
	schema := MustCreateSchema(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for range 2 {
		f := redis.NewChangeFollower(client, postgres.NewChangeLog(MustOpenDBIn(t, schema)))
		f.Namespace, f.Poll, f.BatchSize, f.Logger = ns, 2*time.Millisecond, 8, quiet
		runFollower(t, f)
	}

	const skus = 6
	for i := range skus {
		if _, _, err := inv.PutSKU(ctx, fmt.Sprintf("sku-%d", i), revguard.SKUUpdate{Stock: 40, PerCustomerLimit: 3, HoldSeconds: 60}); err != nil {
			t.Fatal(err)
		}
	}
	// fate: 0 confirmed, 1 released, 2 left to expire.
	var mu sync.Mutex
	fates := make(map[string]int)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 40 {
				customer := fmt.Sprintf("c-%d-%d", g, i)
				res, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: fmt.Sprintf("sku-%d", rng.IntN(skus)), CustomerID: customer, Quantity: 1 + rng.Int64N(2)})
				if revguard.ErrorCode(err) == revguard.CodeSoldOut {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				fate := rng.IntN(3)
				switch fate {
				case 0:
					_, err = inv.Confirm(ctx, revguard.ConfirmRequest{ID: res.ID, CustomerID: customer})
				case 1:
					_, err = inv.Release(ctx, res.ID, customer)
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				fates[res.ID] = fate
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// The holds left (fate 2) expire.
	clock.Advance(2 * time.Minute)
	if err := inv.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := inv.PutSKU(ctx, "sku-0", revguard.SKUUpdate{Stock: 100, PerCustomerLimit: 3, HoldSeconds: 60}); err != nil {
		t.Fatal(err)
	}

	l := postgres.NewChangeLog(MustOpenDBIn(t, schema))
	st := waitCaughtUp(t, l, streamEnds(t, client, ns))
	changes, err := l.ReadChanges(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(changes)) != st.LastSeq {
		t.Fatalf("%d changes, the last is %d", len(changes), st.LastSeq)
	}
	seen := make(map[string]map[revguard.ChangeType]int)
	counts := make(map[string]revguard.ChangeSKU)
	for i, c := range changes {
		if c.Seq != uint64(i)+1 {
			t.Fatalf("change %d has seq %d", i, c.Seq)
		}
		var body revguard.ChangeBody
		if err := json.Unmarshal(c.Body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Seq != c.Seq || body.Type != c.Type || body.SKU.ID != c.SKU {
			t.Fatalf("change %d: body %+v", c.Seq, body)
		}
		prev := counts[c.SKU]
		if err := checkCounts(c.Type, prev, body); err != nil {
			t.Fatalf("change %d (%s of %s): %v", c.Seq, c.Type, c.SKU, err)
		}
		counts[c.SKU] = body.SKU
		if body.Reservation != nil {
			id := body.Reservation.ID
			if seen[id] == nil {
				seen[id] = make(map[revguard.ChangeType]int)
			}
			seen[id][c.Type]++
		}
	}
	wantType := map[int]revguard.ChangeType{0: revguard.ChangeConfirmed, 1: revguard.ChangeReleased, 2: revguard.ChangeExpired}
	for id, fate := range fates {
		want := map[revguard.ChangeType]int{revguard.ChangeHeld: 1, wantType[fate]: 1}
		if fmt.Sprint(seen[id]) != fmt.Sprint(want) {
			t.Fatalf("reservation %s (fate %d): changes %v, want %v", id, fate, seen[id], want)
		}
	}
	for i := range skus {
		id := fmt.Sprintf("sku-%d", i)
		sku, err := inv.FindSKU(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got := st.SKUs[id]
		if got.Stock != sku.Stock || got.Held != sku.Held || got.Sold != sku.Sold ||
			counts[id].Held != sku.Held || counts[id].Sold != sku.Sold || counts[id].Available != sku.Available {
			t.Fatalf("%s: log %+v, last change %+v; inventory %+v", id, got, counts[id], sku)
		}
	}
}

// checkCounts checks that the counts of a change of type typ follow from prev, the
// counts of the SKU's change before it.
func checkCounts(typ revguard.ChangeType, prev revguard.ChangeSKU, b revguard.ChangeBody) error {
	s := b.SKU
	if s.Available != s.Stock-s.Held-s.Sold {
		return fmt.Errorf("available %d of stock %d, held %d, sold %d", s.Available, s.Stock, s.Held, s.Sold)
	}
	var q int64
	if b.Reservation != nil {
		q = b.Reservation.Quantity
	}
	var dh, ds int64
	switch typ {
	case revguard.ChangeHeld:
		dh = q
	case revguard.ChangeConfirmed:
		dh, ds = -q, q
	case revguard.ChangeReleased, revguard.ChangeExpired:
		dh = -q
	}
	if s.Held != prev.Held+dh || s.Sold != prev.Sold+ds {
		return fmt.Errorf("held %d, sold %d after held %d, sold %d", s.Held, s.Sold, prev.Held, prev.Sold)
	}
	return nil
}

// TestChangeFollower_TrimKeeps checks that the outbox's trim keeps every entry the
// change log has not read, even once the ledger has them all, and lets them go once
// it has.
func TestChangeFollower_TrimKeeps(t *testing.T) {
	ctx := t.Context()
	inv, client, ns := fleetInventory(t, revguardtest.NewClock(time.Now()))
	db := MustOpenDB(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	o := redis.NewOutbox(client)
	o.Namespace, o.KeepChanges, o.Logger, o.Block = ns, true, quiet, 50*time.Millisecond
	octx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(octx, postgres.NewLedger(db)) }()
	t.Cleanup(func() { cancel(); <-done })

	for i := range 20 {
		sku := fmt.Sprintf("sku-%d", i)
		if _, _, err := inv.PutSKU(ctx, sku, revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 1, HoldSeconds: 60}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: sku, CustomerID: "c", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	length := func() int64 {
		var n int64
		for i := range 4 {
			m, err := client.XLen(ctx, fmt.Sprintf("{%s:%d}:outbox", ns, i)).Result()
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		bl, err := o.Backlog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if bl.Events() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ledger still lacks %d events", bl.Events())
		}
	}
	if err := o.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := length(); n != 40 {
		t.Fatalf("%d entries left after the ledger applied them all; want the 40 the change log has not read", n)
	}

	l := postgres.NewChangeLog(db)
	f := redis.NewChangeFollower(client, l)
	f.Namespace, f.Poll, f.Logger = ns, 2*time.Millisecond, quiet
	runFollower(t, f)
	st := waitCaughtUp(t, l, streamEnds(t, client, ns))
	if st.LastSeq != 40 {
		t.Fatalf("%d changes, want 40", st.LastSeq)
	}
	// The follower marks its place just after its append: trim once it has.
	for deadline := time.Now().Add(10 * time.Second); length() > 0; time.Sleep(10 * time.Millisecond) {
		if err := o.Trim(ctx); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left after both the ledger and the change log read them all", length())
		}
	}
}

// BenchmarkChangeFollower measures how fast the change log follows the outbox: b.N
// reservations are made on 16 SKUs first, then one follower turns their events into
// changes in PostgreSQL. It reports events/s.
func BenchmarkChangeFollower(b *testing.B) {
	ctx := b.Context()
	inv, client, ns := fleetInventory(b, revguardtest.NewClock(time.Now()))
	for i := range 16 {
		if _, _, err := inv.PutSKU(ctx, fmt.Sprintf("sku-%d", i), revguard.SKUUpdate{Stock: 1_000_000_000, PerCustomerLimit: 1, HoldSeconds: 3600}); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := g; i < b.N; i += 32 {
				if _, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: fmt.Sprintf("sku-%d", i%16), CustomerID: fmt.Sprintf("c-%d", i), Quantity: 1}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ends := streamEnds(b, client, ns)
	l := postgres.NewChangeLog(MustOpenDB(b))
	f := redis.NewChangeFollower(client, l)
	f.Namespace, f.Logger = ns, slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ResetTimer()
	start := time.Now()
	runFollower(b, f)
	waitCaughtUp(b, l, ends)
	b.StopTimer()
	b.ReportMetric(float64(b.N+16)/time.Since(start).Seconds(), "events/s")
}
