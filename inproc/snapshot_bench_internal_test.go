package inproc

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

// BenchmarkSnapshotSKULock measures what a snapshot costs a hot SKU with n reservations:
// ns/op is the encoding of the SKU's record (writeSKU, to a writer that discards it),
// max-wait-µs the longest that another goroutine, taking and releasing the SKU's lock
// in a loop meanwhile as reserves do, waited for it. The lock is held for the copy and
// for each part of snapChunk reservations (chunk=4096), not for the whole encoding as
// it was before (chunk=all).
//
//	go test ./inproc -run '^$' -bench SnapshotSKULock -benchtime 3x
func BenchmarkSnapshotSKULock(b *testing.B) {
	defer func(n int) { snapChunk = n }(snapChunk)
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, chunk := range []int{4096, 0} {
			name := fmt.Sprintf("reservations=%d/chunk=%d", n, chunk)
			if chunk == 0 {
				chunk, name = n, fmt.Sprintf("reservations=%d/chunk=all", n)
			}
			b.Run(name, func(b *testing.B) {
				snapChunk = chunk
				s := newSKU("hot")
				s.exists.Store(true)
				s.book = &book{all: make([]*reservation, n)}
				now := time.Now().UnixNano()
				for i := range s.book.all {
					r := &reservation{sku: s, customer: fmt.Sprintf("customer-%07d", i), createdAt: now,
						expiresAt: now + int64(time.Hour), qty: 1, state: stHeld}
					r.id = newID(now)
					s.book.all[i] = r
				}
				inv := &Inventory{}
				var buf []byte
				// Without collections meanwhile: their pauses on a loaded 2-core machine
				// would be measured as waits for the lock.
				runtime.GC()
				defer debug.SetGCPercent(debug.SetGCPercent(-1))
				var maxWait time.Duration
				for b.Loop() {
					stop := make(chan struct{})
					var wg sync.WaitGroup
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							start := time.Now()
							s.mu.Lock()
							s.mu.Unlock()
							maxWait = max(maxWait, time.Since(start))
						}
					})
					buf, _, _, _ = inv.writeSKU(s, buf, func([]byte) {})
					close(stop)
					wg.Wait()
				}
				b.ReportMetric(float64(maxWait.Microseconds()), "max-wait-µs")
			})
		}
	}
}
