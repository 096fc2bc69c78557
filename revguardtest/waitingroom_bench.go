package revguardtest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// BenchmarkDraw measures the draw of a pre-queue of places customers at opens_at,
// made by the Advance that finds it due. Each iteration calls open for a fresh
// inventory and room on clock (close, when not nil, ends them after the iteration),
// fills the pre-queue from 64 goroutines untimed, and times the draw alone. Run it
// with -benchtime 1x: each iteration fills a room.
func BenchmarkDraw(b *testing.B, places int, open func(b *testing.B, clock *Clock) (inv revguard.Inventory, room revguard.WaitingRoom, close func())) {
	ctx := b.Context()
	for b.Loop() {
		b.StopTimer()
		clock := NewClock(time.Time{})
		inv, w, closeRoom := open(b, clock)
		opens := clock.Now().Add(time.Minute)
		if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 100, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: opens}); err != nil {
			b.Fatal(err)
		}
		if _, _, err := w.PutRoom(ctx, "s", revguard.RoomSettings{PreQueueSeconds: 600, AdmitPerSecond: 10}); err != nil {
			b.Fatal(err)
		}
		JoinPlaces(b, w, "s", places)
		clock.Set(opens)
		b.StartTimer()
		if err := w.Advance(ctx, "s"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if r, _ := w.FindRoom(ctx, "s"); r.DrawSize != int64(places) {
			b.Fatalf("draw of %d, want %d", r.DrawSize, places)
		}
		if closeRoom != nil {
			closeRoom()
		}
		b.StartTimer()
	}
}

// JoinPlaces fills the room of sku with n places, customers c-000000 to c-<n-1> (six
// digits), joining from 64 goroutines; it fails tb on any error.
func JoinPlaces(tb testing.TB, w revguard.WaitingRoom, sku string, n int) {
	tb.Helper()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first atomic.Value
	for g := range 64 {
		wg.Go(func() {
			for i := g; i < n; i += 64 {
				if _, _, err := w.Join(tb.Context(), sku, fmt.Sprintf("c-%06d", i)); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		tb.Fatalf("%d joiners failed; the first: %v", failed.Load(), first.Load())
	}
}
