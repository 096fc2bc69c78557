package inproc

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/revguardtest"
)

// evictEnv is an engine with a one-hour Retention, a settable clock and a settable
// ledger position (Archived).
type evictEnv struct {
	dir      string
	inv      *Inventory
	clock    *revguardtest.Clock
	archived atomic.Uint64
}

func openEvictEnv(t *testing.T, dir string, clock *revguardtest.Clock) *evictEnv {
	t.Helper()
	e := &evictEnv{dir: dir, clock: clock}
	e.archived.Store(math.MaxUint64)
	j := journal.New(filepath.Join(dir, "journal"))
	j.Logger = slog.New(slog.DiscardHandler)
	if err := j.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.inv = NewInventory(j, filepath.Join(dir, "snapshots"))
	e.inv.Logger = slog.New(slog.DiscardHandler)
	e.inv.Now = clock.Now
	e.inv.Retention = time.Hour
	e.inv.Archived = e.archived.Load
	if err := e.inv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeInternal(t, e.inv) })
	return e
}

func TestEvict(t *testing.T) {
	ctx := context.Background()
	clock := revguardtest.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	e := openEvictEnv(t, dir, clock)
	inv := e.inv
	mustPut(t, inv, "shoe", 10, 1, 600)
	reserve := func(customer, key string) revguard.Reservation {
		t.Helper()
		r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "shoe", CustomerID: customer, Quantity: 1, IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	confirmed := reserve("alice", "k-alice")
	if _, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: confirmed.ID, CustomerID: "alice"}); err != nil {
		t.Fatal(err)
	}
	released := reserve("bob", "k-bob")
	if _, err := inv.Release(ctx, released.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	expired := reserve("carol", "")
	clock.Advance(20 * time.Minute) // carol's hold expires
	if _, err := inv.FindSKU(ctx, "shoe"); err != nil {
		t.Fatal(err)
	}

	// Not yet: the retention has not passed.
	if n := inv.evict(); n != 0 {
		t.Fatalf("evicted %d before the retention passed", n)
	}
	clock.Advance(2 * time.Hour)
	held := reserve("dave", "")
	// Not while the ledger lacks them, nor before a snapshot taken after them.
	e.archived.Store(0)
	if n := inv.evict(); n != 0 {
		t.Fatalf("evicted %d that the ledger does not have yet", n)
	}
	e.archived.Store(math.MaxUint64)
	if n := inv.evict(); n != 0 {
		t.Fatalf("evicted %d before a snapshot after their final change", n)
	}
	if err := inv.snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if n := inv.evict(); n != 3 {
		t.Fatalf("evicted %d, want the 3 final reservations", n)
	}

	for _, r := range []revguard.Reservation{confirmed, released, expired} {
		if _, err := inv.FindReservation(ctx, r.ID); revguard.ErrorCode(err) != revguard.CodeReservationNotFound {
			t.Errorf("FindReservation(%s) after eviction: %v, want reservation_not_found (the ledger answers)", r.ID, err)
		}
		if _, err := inv.Release(ctx, r.ID, ""); revguard.ErrorCode(err) != revguard.CodeReservationNotFound {
			t.Errorf("Release(%s) after eviction: %v, want reservation_not_found", r.ID, err)
		}
	}
	if got, err := inv.FindReservation(ctx, held.ID); err != nil || got.Status != revguard.StatusHeld {
		t.Errorf("the hold still in force: %+v, %v", got, err)
	}
	// The keys left with their reservations; alice's confirmed unit still counts.
	if _, found, err := inv.FindIdempotent(ctx, revguard.ReserveRequest{SKU: "shoe", CustomerID: "bob", Quantity: 1, IdempotencyKey: "k-bob"}); found || err != nil {
		t.Errorf("bob's key after eviction: found %v, err %v", found, err)
	}
	if _, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "shoe", CustomerID: "alice", Quantity: 1}); revguard.ErrorCode(err) != revguard.CodeLimitExceeded {
		t.Errorf("alice again after her confirmed reservation left memory: %v, want limit_exceeded", err)
	}
	sku, err := inv.FindSKU(ctx, "shoe")
	if err != nil {
		t.Fatal(err)
	}
	revguardtest.CheckSKU(t, sku)
	if sku.Sold != 1 || sku.Held != 1 || sku.Available != 8 {
		t.Errorf("counts after eviction: %+v, want sold 1, held 1, available 8", sku)
	}
	var n int
	inv.ForEachReservation(func(revguard.Reservation) bool { n++; return true })
	if n != 1 {
		t.Errorf("ForEachReservation lists %d, want the 1 left in memory", n)
	}
	if st := inv.Stats(); st.Evicted != 3 {
		t.Errorf("Stats().Evicted = %d, want 3", st.Evicted)
	}

	// After a restart from a snapshot taken before they left, they are back until the
	// next pass, with the counts as they were.
	closeInternal(t, inv)
	e2 := openEvictEnv(t, dir, clock)
	e.inv = e2.inv // the first cleanup closes it again: Close is idempotent
	if n := e2.inv.evict(); n != 3 {
		t.Fatalf("after a restart, evicted %d, want the 3 loaded from the snapshot again", n)
	}
	for _, r := range []revguard.Reservation{confirmed, released, expired} {
		if _, err := e2.inv.FindReservation(ctx, r.ID); revguard.ErrorCode(err) != revguard.CodeReservationNotFound {
			t.Errorf("after a restart, FindReservation(%s): %v, want reservation_not_found", r.ID, err)
		}
	}
	sku2, err := e2.inv.FindSKU(ctx, "shoe")
	if err != nil || sku2 != sku {
		t.Errorf("after a restart: %+v, %v; want %+v", sku2, err, sku)
	}
}

// TestEvictRevived: a hold revived after it expired stays until the retention has
// passed since the revive.
func TestEvictRevived(t *testing.T) {
	ctx := context.Background()
	clock := revguardtest.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	e := openEvictEnv(t, t.TempDir(), clock)
	inv := e.inv
	mustPut(t, inv, "shoe", 10, 1, 60)
	r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "shoe", CustomerID: "alice", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Minute) // expired
	if _, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "alice", Revive: true}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(20 * time.Minute) // an hour and ten minutes after the expiry, twenty after the revive
	if err := inv.snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if n := inv.evict(); n != 0 {
		t.Fatalf("evicted %d: the revive made it final again twenty minutes ago", n)
	}
	clock.Advance(time.Hour)
	if n := inv.evict(); n != 1 {
		t.Fatalf("evicted %d an hour after the revive, want 1", n)
	}
}

// BenchmarkRetentionMemory shows that a long sale's memory follows the holds in force,
// not every hold ever made: 5,000,000 holds of distinct customers, each released right
// away, on a clock that advances 1 ms per hold, with a one-minute Retention. It reports
// the live heap and the process's resident size after each million (they stay flat),
// and, for contrast, the live heap of the same sale without a Retention at its end.
//
//	go test -run '^$' -bench RetentionMemory -benchtime 1x ./inproc
func BenchmarkRetentionMemory(b *testing.B) {
	const holds, step = 5_000_000, 1_000_000
	for b.Loop() {
		for _, retention := range []time.Duration{time.Minute, 0} {
			clock := revguardtest.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
			dir := b.TempDir()
			j := journal.New(filepath.Join(dir, "journal"))
			j.Logger = slog.New(slog.DiscardHandler)
			j.NoSync = true // the memory, not the disk, is measured here
			if err := j.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			inv := NewInventory(j, filepath.Join(dir, "snapshots"))
			inv.Logger = slog.New(slog.DiscardHandler)
			inv.Now = clock.Now
			inv.Retention = retention
			inv.Archived = j.Durable // as if the ledger kept up
			if err := inv.Open(context.Background()); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if _, _, err := inv.PutSKU(ctx, "drop", revguard.SKUUpdate{Stock: 1_000_000, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
				b.Fatal(err)
			}
			for i := range holds {
				r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "drop", CustomerID: "c" + strconv.Itoa(i), Quantity: 1})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := inv.Release(ctx, r.ID, ""); err != nil {
					b.Fatal(err)
				}
				clock.Advance(time.Millisecond)
				if (i+1)%100_000 == 0 && retention > 0 {
					if err := inv.snapshot(ctx); err != nil {
						b.Fatal(err)
					}
					inv.evict()
				}
				if (i+1)%step == 0 && retention > 0 {
					heap, rss := liveHeapMB(), rssMB()
					b.ReportMetric(heap, fmt.Sprintf("heap-MB@%dM", (i+1)/step))
					b.ReportMetric(rss, fmt.Sprintf("rss-MB@%dM", (i+1)/step))
				}
			}
			if retention == 0 {
				b.ReportMetric(liveHeapMB(), "heap-MB@5M-no-retention")
			} else {
				b.ReportMetric(float64(inv.Stats().Evicted), "evicted")
			}
			inv.Close()
			j.Close()
		}
	}
}

// liveHeapMB returns the heap in use after a collection, in MiB.
func liveHeapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// rssMB returns the process's resident set size in MiB (0 where /proc is missing).
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseFloat(f[1], 64)
	return pages * float64(os.Getpagesize()) / (1 << 20)
}

// TestEvictDuringSnapshot: while a snapshot encodes a SKU in parts (book.preImages set), the
// list of reservations it read must stay as it was: eviction builds a new list instead
// of compacting the old one in place.
func TestEvictDuringSnapshot(t *testing.T) {
	inv := &Inventory{Retention: time.Hour}
	inv.res.init()
	s := newSKU("s")
	b := s.bookOrNew()
	for i := range 6 {
		r := &reservation{id: newID(int64(i + 1)), sku: s, customer: fmt.Sprintf("c%d", i), qty: 1, state: stReleased, doneAt: 1}
		b.all = append(b.all, r)
		if i%2 == 0 {
			b.final = append(b.final, finalEntry{seq: uint64(i + 1), at: 1, r: r, state: stReleased})
		}
	}
	read := b.all // what writeSKU keeps
	want := slices.Clone(read)
	b.preImages = make(map[*reservation]reservation)
	if n := inv.evictSKU(s, 2, 100); n != 3 {
		t.Fatalf("evicted %d, want 3", n)
	}
	if !slices.Equal(read, want) {
		t.Fatal("eviction during a snapshot changed the list the snapshot reads")
	}
	if len(b.all) != 3 || len(b.preImages) != 3 {
		t.Fatalf("after eviction: %d reservations listed, %d kept for the snapshot; want 3 and 3", len(b.all), len(b.preImages))
	}
	for r, old := range b.preImages {
		if old.state != stReleased || r.state != stEvicted {
			t.Fatalf("kept state %d (live %d), want released (evicted)", old.state, r.state)
		}
	}
}
