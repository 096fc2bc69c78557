package revguardtest

import (
	"fmt"
	"sync"
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
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Go(func() {
				for i := g; i < places; i += 64 {
					if _, _, err := w.Join(ctx, "s", fmt.Sprintf("c-%06d", i)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
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
