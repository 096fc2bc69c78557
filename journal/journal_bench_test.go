package journal_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// benchEvent is a typical reservation event (~80 bytes on disk).
var benchEvent = revguard.Event{Type: revguard.EventReserved, Time: t0, SKU: "drop-2026-sneaker-42",
	ReservationID: ulidText, CustomerID: "cus_01JQ3Z8Y6N5V7W2X", Quantity: 1,
	ExpiresAt: t0.Add(10 * time.Minute), IdempotencyKey: "c0ffee00-1234"}

// BenchmarkAppendWait is the hot path with real fsync: each caller appends one event
// and waits until it is durable, as the engine does for every acknowledged change.
// Group commit shares each fsync among the callers that arrived during the previous one.
func BenchmarkAppendWait(b *testing.B) {
	for _, callers := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			j := MustOpenJournal(b, b.TempDir(), withSync)
			ctx := context.Background()
			b.ReportAllocs()
			if callers == 1 {
				for b.Loop() {
					ev := benchEvent
					seq, err := j.Append(&ev)
					if err != nil {
						b.Fatal(err)
					}
					if err := j.Wait(ctx, seq); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						ev := benchEvent
						seq, err := j.Append(&ev)
						if err != nil {
							b.Error(err)
							return
						}
						if err := j.Wait(ctx, seq); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			reportCommits(b, j)
			j.Close()
		})
	}
}

func reportCommits(b *testing.B, j *journal.Journal) {
	st := j.Stats()
	secs := b.Elapsed().Seconds()
	if st.Batches == 0 || secs == 0 {
		return
	}
	b.ReportMetric(float64(st.Batches)/secs, "fsyncs/s")
	b.ReportMetric(float64(st.Appends)/float64(st.Batches), "events/batch")
	b.ReportMetric(float64(st.Appends)/secs, "events/s")
	b.ReportMetric(float64(st.SyncNanos)/float64(st.Batches), "ns/fsync")
	b.ReportMetric(float64(st.Bytes)/float64(st.Appends), "bytes/event")
}

// BenchmarkAppend measures Append alone (no fsync, nobody waits): the cost the engine
// pays while holding its SKU lock. It must not allocate.
func BenchmarkAppend(b *testing.B) {
	j := MustOpenJournal(b, b.TempDir())
	ev := benchEvent
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		var err error
		if seq, err = j.Append(&ev); err != nil {
			b.Fatal(err)
		}
		if seq%4096 == 0 {
			// Keep the pending batch bounded, as waiting callers do.
			if err := j.Wait(context.Background(), seq); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAppendParallel is Append from every core at once (lock contention).
func BenchmarkAppendParallel(b *testing.B) {
	j := MustOpenJournal(b, b.TempDir())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ev := benchEvent
		for pb.Next() {
			seq, err := j.Append(&ev)
			if err != nil {
				b.Error(err)
				return
			}
			if seq%4096 == 0 {
				j.Wait(context.Background(), seq)
			}
		}
	})
}

// makeBenchJournal writes n varied events to a new journal (no fsync: setup only).
func makeBenchJournal(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	j := MustOpenJournal(b, dir)
	for i := 1; i <= n; i++ {
		ev := testEvent(i)
		seq, err := j.Append(&ev)
		if err != nil {
			b.Fatal(err)
		}
		if i%10000 == 0 || i == n {
			if err := j.Wait(context.Background(), seq); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkRecovery1M measures what recovery costs the journal for 1,000,000 events:
// Open (verifying every record) and a full Replay. The engine's target for recovering
// 1M changes is under 2 s in total.
func BenchmarkRecovery1M(b *testing.B) {
	const n = 1_000_000
	dir := makeBenchJournal(b, n)
	b.Run("Open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			j := MustOpenJournal(b, dir)
			if j.LastSeq() != n {
				b.Fatalf("LastSeq = %d", j.LastSeq())
			}
			j.Close()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("Replay", func(b *testing.B) {
		j := MustOpenJournal(b, dir, readOnly)
		b.ReportAllocs()
		for b.Loop() {
			count := 0
			if err := j.Replay(0, func(*revguard.Event) error { count++; return nil }); err != nil {
				b.Fatal(err)
			}
			if count != n {
				b.Fatalf("replayed %d events", count)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkReadEvents is the ledger follower reading batches of 1024 events.
func BenchmarkReadEvents(b *testing.B) {
	const n = 100_000
	dir := makeBenchJournal(b, n)
	j := MustOpenJournal(b, dir, readOnly)
	ctx := context.Background()
	b.ReportAllocs()
	var after uint64
	events := 0
	for b.Loop() {
		evs, err := j.ReadEvents(ctx, after, 1024)
		if err != nil {
			b.Fatal(err)
		}
		events += len(evs)
		after = evs[len(evs)-1].Seq
		if after == n {
			after = 0
		}
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkEncodeEvent(b *testing.B) {
	ev := benchEvent
	ev.Seq = 123456789
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = journal.EncodeEvent(buf[:0], &ev)
	}
	b.ReportMetric(float64(len(buf)), "bytes/event")
}

func BenchmarkDecodeEvent(b *testing.B) {
	ev := benchEvent
	ev.Seq = 123456789
	rec := journal.EncodeEvent(nil, &ev)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := journal.DecodeEvent(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendWaitPaced is light load: callers that pause between changes (as
// remote clients do), so that the callers woken by a commit do not append again at
// once. It reports the mean time from Append to durable.
func BenchmarkAppendWaitPaced(b *testing.B) {
	for _, callers := range []int{2, 8} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			j := MustOpenJournal(b, b.TempDir(), withSync)
			ctx := context.Background()
			var waited atomic.Int64
			b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					time.Sleep(50 * time.Microsecond)
					start := time.Now()
					ev := benchEvent
					seq, err := j.Append(&ev)
					if err != nil {
						b.Error(err)
						return
					}
					if err := j.Wait(ctx, seq); err != nil {
						b.Error(err)
						return
					}
					waited.Add(int64(time.Since(start)))
				}
			})
			b.ReportMetric(float64(waited.Load())/float64(b.N)/1e3, "µs/durable")
			reportCommits(b, j)
			j.Close()
		})
	}
}
