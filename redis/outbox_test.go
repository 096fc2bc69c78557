package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"

	goredis "github.com/redis/go-redis/v9"
)

// workload makes every kind of change on skus SKUs of inv, from several goroutines:
// puts, reserves (some with idempotency keys, some replayed), confirms, releases,
// expiries (by advancing clock) and revives.
func workload(tb testing.TB, inv revguard.Inventory, clock *revguardtest.Clock, prefix string, skus int) {
	tb.Helper()
	ctx := tb.Context()
	for i := range skus {
		if _, _, err := inv.PutSKU(ctx, fmt.Sprintf("%s-%d", prefix, i), revguard.SKUUpdate{Stock: 50, PerCustomerLimit: 3, HoldSeconds: 60}); err != nil {
			tb.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 40 {
				req := revguard.ReserveRequest{SKU: fmt.Sprintf("%s-%d", prefix, rng.IntN(skus)),
					CustomerID: fmt.Sprintf("c%d", rng.IntN(20)), Quantity: 1 + rng.Int64N(2)}
				if i%3 == 0 {
					req.IdempotencyKey = fmt.Sprintf("k-%d-%d", g, i/6) // every other one is a replay
				}
				r, _, err := inv.Reserve(ctx, req)
				if err != nil {
					continue
				}
				switch rng.IntN(4) {
				case 0:
					inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: r.CustomerID, OrderRef: "o-" + r.ID})
				case 1:
					inv.Release(ctx, r.ID, r.CustomerID)
				}
			}
		})
	}
	wg.Wait()
	clock.Advance(time.Minute) // the holds left expire
	for i := range skus {
		if _, err := inv.FindSKU(ctx, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
			tb.Fatal(err)
		}
	}
}

// totalEvents returns how many events the scripts appended in namespace ns.
func totalEvents(tb testing.TB, c goredis.UniversalClient, ns string, shards int) int {
	tb.Helper()
	n := 0
	for i := range shards {
		v, err := c.Get(tb.Context(), fmt.Sprintf("{%s:%d}:seq", ns, i)).Int()
		if err != nil && err != goredis.Nil {
			tb.Fatal(err)
		}
		n += v
	}
	return n
}

// startOutbox runs an Outbox of namespace ns into ledger until the returned stop is
// called (or the test ends); stop waits for Run to return.
func startOutbox(tb testing.TB, c goredis.UniversalClient, ns string, ledger revguard.Ledger, edit func(*redis.Outbox)) (*redis.Outbox, func()) {
	ob := redis.NewOutbox(c)
	ob.Namespace = ns
	ob.Logger = slog.New(slog.DiscardHandler)
	ob.MinBackoff, ob.MaxBackoff = time.Millisecond, 50*time.Millisecond
	if edit != nil {
		edit(ob)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx, ledger) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("Outbox.Run: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return ob, stop
}

// waitFor polls cond until it holds, failing tb after 30 seconds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOutbox_ExactlyOnce(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ns := newNamespace(t, c)
	clock := revguardtest.NewClock(time.Time{})
	inv := MustOpenInventory(t, c, ns, func(inv *redis.Inventory) { inv.Now = clock.Now; inv.Shards = 4 })
	ledger := newTestLedger()
	var failures int
	var mu sync.Mutex
	ledger.hook = func(context.Context) error { // every third apply fails: retried, never skipped
		mu.Lock()
		defer mu.Unlock()
		if failures++; failures%3 == 0 {
			return fmt.Errorf("injected failure %d", failures)
		}
		return nil
	}
	ob, _ := startOutbox(t, c, ns, ledger, func(ob *redis.Outbox) { ob.BatchSize = 16 })
	workload(t, inv, clock, "ob", 6)
	want := totalEvents(t, c, ns, 4)
	waitFor(t, "the ledger to catch up", func() bool { n, _ := ledger.distinct(); return n == want })
	ledger.mustMatchInventory(t, inv)
	waitFor(t, "the backlog to drain", func() bool {
		bl, err := ob.Backlog(t.Context())
		return err == nil && bl.Events() == 0 && ob.InFlight() == 0
	})
	if n, _ := ledger.distinct(); n != want || int(ob.Applied()) < want {
		t.Fatalf("ledger has %d distinct events, applied %d; want %d", n, ob.Applied(), want)
	}
	if ob.Lag() != 0 {
		t.Fatalf("Lag = %v once caught up, want 0", ob.Lag())
	}
	// Everything was acknowledged: a trim leaves the streams empty.
	if err := ob.Trim(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if n := c.XLen(t.Context(), fmt.Sprintf("{%s:%d}:outbox", ns, i)).Val(); n != 0 {
			t.Fatalf("stream %d keeps %d entries after every entry was acknowledged and trimmed", i, n)
		}
	}
}

func TestOutbox_ClaimsFromDeadConsumer(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ns := newNamespace(t, c)
	clock := revguardtest.NewClock(time.Time{})
	inv := MustOpenInventory(t, c, ns, func(inv *redis.Inventory) { inv.Now = clock.Now; inv.Shards = 4 })
	workload(t, inv, clock, "dead", 4)
	want := totalEvents(t, c, ns, 4)

	// The first consumer reads entries but never gets them applied: it is killed
	// (its context cancelled) while ApplyEvents hangs.
	stuck := newTestLedger()
	entered := make(chan struct{}, 1)
	stuck.hook = func(ctx context.Context) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	first, stopFirst := startOutbox(t, c, ns, stuck, func(ob *redis.Outbox) { ob.Consumer = "dead-node" })
	<-entered
	waitFor(t, "every entry to be delivered", func() bool {
		bl, err := first.Backlog(t.Context())
		return err == nil && bl.Undelivered == 0
	})
	stopFirst()
	bl, err := first.Backlog(t.Context())
	if err != nil || bl.Pending != int64(want) || bl.Oldest.IsZero() {
		t.Fatalf("after the kill: backlog %+v, %v; want %d pending entries", bl, err, want)
	}
	if n, _ := stuck.distinct(); n != 0 {
		t.Fatalf("the killed consumer's ledger applied %d events", n)
	}

	// Nothing pending is trimmed.
	if err := first.Trim(t.Context()); err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i := range 4 {
		kept += int(c.XLen(t.Context(), fmt.Sprintf("{%s:%d}:outbox", ns, i)).Val())
	}
	if kept != want {
		t.Fatalf("trim with %d entries pending left %d entries", want, kept)
	}

	// A second consumer takes them over once idle for MinIdle.
	ledger := newTestLedger()
	second, _ := startOutbox(t, c, ns, ledger, func(ob *redis.Outbox) {
		ob.Consumer = "live-node"
		ob.MinIdle = 200 * time.Millisecond
	})
	waitFor(t, "the second consumer to apply the dead one's entries", func() bool {
		n, _ := ledger.distinct()
		return n == want
	})
	ledger.mustMatchInventory(t, inv)
	waitFor(t, "the backlog to drain", func() bool {
		bl, err := second.Backlog(t.Context())
		return err == nil && bl.Events() == 0
	})
}

func TestOutbox_TrimKeepsUnacknowledged(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ns := newNamespace(t, c)
	inv := MustOpenInventory(t, c, ns, func(inv *redis.Inventory) { inv.Shards = 1 })
	ctx := t.Context()
	put := func(i int) {
		if _, _, err := inv.PutSKU(ctx, "trim-"+strconv.Itoa(i), revguard.SKUUpdate{Stock: 1, PerCustomerLimit: 1, HoldSeconds: 60}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		put(i)
	}
	stream := "{" + ns + ":0}:outbox"
	ob := redis.NewOutbox(c)
	ob.Namespace = ns
	// No group yet: nothing is trimmed.
	if err := ob.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.XLen(ctx, stream).Val(); n != 10 {
		t.Fatalf("trim without a group left %d of 10 entries", n)
	}
	// Deliver 4 entries to a consumer, acknowledge 2 of them (the 2nd and 3rd).
	if err := c.XGroupCreateMkStream(ctx, stream, redis.DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: redis.DefaultGroup, Consumer: "x", Streams: []string{stream, ">"}, Count: 4}).Result()
	if err != nil || len(got[0].Messages) != 4 {
		t.Fatalf("XREADGROUP = %v, %v", got, err)
	}
	msgs := got[0].Messages
	c.XAck(ctx, stream, redis.DefaultGroup, msgs[1].ID, msgs[2].ID)
	if err := ob.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.XLen(ctx, stream).Val(); n != 10 {
		t.Fatalf("trim with the first entry pending left %d of 10 entries", n)
	}
	c.XAck(ctx, stream, redis.DefaultGroup, msgs[0].ID)
	if err := ob.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	rest, _ := c.XRange(ctx, stream, "-", "+").Result()
	if len(rest) != 7 || rest[0].ID != msgs[3].ID {
		t.Fatalf("after acknowledging the first 3 of 4 delivered: %d entries left from %v, want 7 from %s", len(rest), rest[0].ID, msgs[3].ID)
	}
	bl, err := ob.Backlog(ctx)
	if err != nil || bl.Pending != 1 || bl.Undelivered != 6 || bl.Events() != 7 {
		t.Fatalf("Backlog = %+v, %v; want 1 pending, 6 undelivered", bl, err)
	}
}

// TestOutbox_BacklogAfterAOFRestart: a Redis restarted from its AOF (the durable
// setup docs/distributed.md asks for) does not restore a consumer group's count of
// entries read exactly: it reports a lag for entries the group read after the last
// rewrite of the file. The backlog must still be what the stream holds beyond the
// group: nothing, once everything was read and acknowledged.
func TestOutbox_BacklogAfterAOFRestart(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--appendonly", "yes", "--appendfsync", "always")
	c := MustDial(t, srv.URL())
	ns := newNamespace(t, c)
	inv := MustOpenInventory(t, c, ns, func(inv *redis.Inventory) { inv.Shards = 1 })
	ctx := t.Context()
	stream := "{" + ns + ":0}:outbox"
	put := func(from, to int) {
		for i := from; i < to; i++ {
			if _, _, err := inv.PutSKU(ctx, "aof-"+strconv.Itoa(i), revguard.SKUUpdate{Stock: 1, PerCustomerLimit: 1, HoldSeconds: 60}); err != nil {
				t.Fatal(err)
			}
		}
	}
	readAll := func() { // as the outbox's consumer does: read, then acknowledge
		got, err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: redis.DefaultGroup, Consumer: "x", Streams: []string{stream, ">"}, Count: 100}).Result()
		if err != nil {
			t.Fatalf("XREADGROUP: %v", err)
		}
		for _, m := range got[0].Messages {
			c.XAck(ctx, stream, redis.DefaultGroup, m.ID)
		}
	}
	put(0, 5)
	if err := c.XGroupCreateMkStream(ctx, stream, redis.DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	readAll()
	if err := c.BgRewriteAOF(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the AOF rewrite", func() bool {
		info, err := c.Info(ctx, "persistence").Result()
		return err == nil && strings.Contains(info, "aof_rewrite_in_progress:0") && !strings.Contains(info, "aof_rewrite_scheduled:1")
	})
	put(5, 12)
	readAll()

	srv.kill()
	srv.start()
	waitFor(t, "Redis to load its AOF", func() bool { return c.Ping(ctx).Err() == nil })
	groups, err := c.XInfoGroups(ctx, stream).Result()
	if err != nil || len(groups) != 1 {
		t.Fatalf("XINFO GROUPS = %v, %v", groups, err)
	}
	t.Logf("after the restart Redis reports a lag of %d (12 entries, all read and acknowledged)", groups[0].Lag)
	ob := redis.NewOutbox(c)
	ob.Namespace = ns
	bl, err := ob.Backlog(ctx)
	if err != nil || bl.Events() != 0 {
		t.Fatalf("Backlog = %+v, %v after a restart with everything read; want none", bl, err)
	}
	put(12, 15) // three more: the backlog counts them
	if bl, err := ob.Backlog(ctx); err != nil || bl.Undelivered != 3 || bl.Pending != 0 {
		t.Fatalf("Backlog = %+v, %v with 3 new entries; want 3 undelivered", bl, err)
	}
	// Redis's own count stays wrong, reads or not, until Trim repairs it; from then on
	// the lag it reports is right, a backlog over what Backlog checks included.
	readAll()
	if err := ob.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	lag := func() int64 {
		groups, err := c.XInfoGroups(ctx, stream).Result()
		if err != nil || len(groups) != 1 {
			t.Fatalf("XINFO GROUPS = %v, %v", groups, err)
		}
		return groups[0].Lag
	}
	if n := lag(); n != 0 {
		t.Fatalf("Redis reports a lag of %d after Trim, with everything read; want 0", n)
	}
	put(15, 115)
	if n := lag(); n != 100 {
		t.Fatalf("Redis reports a lag of %d with 100 new entries, want 100", n)
	}
	if bl, err := ob.Backlog(ctx); err != nil || bl.Undelivered != 100 {
		t.Fatalf("Backlog = %+v, %v with 100 new entries; want 100 undelivered", bl, err)
	}
}
