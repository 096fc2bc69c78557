package inproc

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSnapshotSKULock measures how long a snapshot holds one SKU's lock (ns/op):
// the encoding of the SKU and all of its reservations (appendSKURecord, under s.mu). A
// reserve of that SKU waits that long when it arrives during a snapshot, which comes
// every SnapshotEvery journaled changes or as many as the last one held reservations
// (snapshotInterval).
//
//	go test ./inproc -run '^$' -bench SnapshotSKULock -benchtime 3x
func BenchmarkSnapshotSKULock(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("reservations=%d", n), func(b *testing.B) {
			s := newSKU("hot")
			s.book = &book{all: make([]*reservation, n)}
			now := time.Now().UnixNano()
			for i := range s.book.all {
				r := &reservation{sku: s, customer: fmt.Sprintf("customer-%07d", i), createdAt: now,
					expiresAt: now + int64(time.Hour), qty: 1, state: stHeld}
				r.id = newID(now)
				s.book.all[i] = r
			}
			var buf []byte
			b.ResetTimer()
			for b.Loop() {
				s.mu.Lock()
				buf = appendSKURecord(buf[:0], s)
				s.mu.Unlock()
			}
		})
	}
}
