package inproc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
)

// The benchmarks run with durability on (a real fsync per group commit, in
// b.TempDir()) unless they say otherwise. Run them with
//
//	go test -run '^$' -bench . -benchmem ./inproc
//
// (BenchmarkMemory and BenchmarkRecover build a million-entry state first; add
// -benchtime 1x to run them once.)

// benchEngine opens an engine on a fresh directory, closed at the end of b.
func benchEngine(b *testing.B, noSync bool) *engine {
	b.Helper()
	dir := b.TempDir()
	e, err := openEngine(dir, nil, func(inv *inproc.Inventory) {
		inv.SnapshotEvery = 1 << 40 // measure the hot path, not snapshots
		inv.Journal.NoSync = noSync
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.close() })
	return e
}

func mustPutB(b *testing.B, inv *inproc.Inventory, id string, stock, limit int64) {
	if _, _, err := inv.PutSKU(context.Background(), id, revguard.SKUUpdate{Stock: stock, PerCustomerLimit: limit, HoldSeconds: 600}); err != nil {
		b.Fatal(err)
	}
}

// customers hands out customer ids so that no customer reaches the per-customer limit.
type customers struct {
	n atomic.Int64
}

// next returns a fresh customer id for a caller that will make up to perID reserves.
func (c *customers) next() string { return fmt.Sprintf("bench-c%d", c.n.Add(1)) }

// reportJournal reports fsyncs per second and the mean group-commit size since before.
func reportJournal(b *testing.B, j *journal.Journal, before journal.Stats, start time.Time) {
	st := j.Stats()
	batches := st.Batches - before.Batches
	if batches == 0 {
		return
	}
	b.ReportMetric(float64(batches)/time.Since(start).Seconds(), "fsyncs/s")
	b.ReportMetric(float64(st.Appends-before.Appends)/float64(batches), "events/batch")
	b.ReportMetric(float64(st.SyncNanos-before.SyncNanos)/float64(batches)/1e3, "µs/fsync")
}

// BenchmarkReserveHotSKU reserves one unit of one SKU from 1, 64 and 1024 concurrent
// callers, each acknowledged only once fsynced.
//
// With REVGUARD_BENCH_NOSYNC=1 the journal skips fsync: the figures are then the
// engine's CPU ceiling, for comparison only.
func BenchmarkReserveHotSKU(b *testing.B) {
	noSync := os.Getenv("REVGUARD_BENCH_NOSYNC") == "1"
	for _, callers := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			e := benchEngine(b, noSync)
			mustPutB(b, e.Inv, "hot", revguard.MaxStock, revguard.MaxPerCustomerLimit)
			var cs customers
			ctx := context.Background()
			before, start, cpu0 := e.J.Stats(), time.Now(), cpuTime()
			reserve := func(customer *string, made *int) {
				if *made++; *made%revguard.MaxPerCustomerLimit == 0 {
					*customer = cs.next()
				}
				if _, _, err := e.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: "hot", CustomerID: *customer, Quantity: 1}); err != nil {
					b.Error(err)
				}
			}
			b.ReportAllocs()
			if callers == 1 {
				customer, made := cs.next(), 0
				for b.Loop() {
					reserve(&customer, &made)
				}
			} else {
				b.SetParallelism(callers / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					customer, made := cs.next(), 0
					for pb.Next() {
						reserve(&customer, &made)
					}
				})
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reserves/s")
			// The CPU time of the process per reserve, flusher included: what other
			// load on the machine and the disk's fsync time do not inflate.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-µs/reserve")
			reportJournal(b, e.J, before, start)
		})
	}
}

// BenchmarkReserveSoldOut refuses reserves of a sold-out SKU from all cores.
func BenchmarkReserveSoldOut(b *testing.B) {
	e := benchEngine(b, false)
	mustPutB(b, e.Inv, "gone", 1, 1)
	ctx := context.Background()
	if _, _, err := e.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: "gone", CustomerID: "first", Quantity: 1}); err != nil {
		b.Fatal(err)
	}
	req := revguard.ReserveRequest{SKU: "gone", CustomerID: "late", Quantity: 1}
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _, err := e.Inv.Reserve(ctx, req)
			if e, ok := err.(*revguard.Error); !ok || e.Code != revguard.CodeSoldOut {
				b.Errorf("Reserve of a sold-out SKU: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "refusals/s")
}

// BenchmarkAvailability reads the public view of one SKU from all cores.
func BenchmarkAvailability(b *testing.B) {
	e := benchEngine(b, false)
	mustPutB(b, e.Inv, "sku", 100, 1)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.Inv.Availability(ctx, "sku"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReserveManySKUs reserves across 100,000 SKUs from 64 and 1024 callers.
func BenchmarkReserveManySKUs(b *testing.B) {
	const nSKUs = 100_000
	e := benchEngine(b, false)
	ids := make([]string, nSKUs)
	parallel(nSKUs, 256, func(i int) {
		ids[i] = fmt.Sprintf("sku-%d", i)
		mustPutB(b, e.Inv, ids[i], revguard.MaxStock, revguard.MaxPerCustomerLimit)
	})
	for _, callers := range []int{64, 1024} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			var cs customers
			var next atomic.Uint64
			ctx := context.Background()
			before, start := e.J.Stats(), time.Now()
			b.ReportAllocs()
			b.SetParallelism(callers / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				customer := cs.next()
				for pb.Next() {
					id := ids[next.Add(7919)%nSKUs] // spread over every SKU
					if _, _, err := e.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: id, CustomerID: customer, Quantity: 1}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reserves/s")
			reportJournal(b, e.J, before, start)
		})
	}
}

// parallel calls fn(0..n-1) from workers goroutines (started and waited for here).
func parallel(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// BenchmarkRecover measures recovery of 1,000,000 journaled changes (no snapshot):
// opening the journal (every record checked) and replaying it into a new Inventory.
func BenchmarkRecover(b *testing.B) {
	const changes = 1_000_000
	dir := b.TempDir()
	e, err := openEngine(dir, nil, func(inv *inproc.Inventory) {
		inv.SnapshotEvery = 1 << 40
		inv.Journal.NoSync = true // building the data fast; the files are the same
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range 1000 {
		mustPutB(b, e.Inv, fmt.Sprintf("sku-%d", i), revguard.MaxStock, revguard.MaxPerCustomerLimit)
	}
	// Reserves, with every other one confirmed or released: 1,000,000 changes in all.
	parallel((changes-1000)/2, 64, func(i int) {
		customer := fmt.Sprintf("c%d", i%5000)
		r, _, err := e.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: fmt.Sprintf("sku-%d", i%1000), CustomerID: customer, Quantity: 1})
		if err != nil {
			b.Error(err)
			return
		}
		if i%2 == 0 {
			_, err = e.Inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: customer, OrderRef: "order"})
		} else {
			_, err = e.Inv.Release(ctx, r.ID, "")
		}
		if err != nil {
			b.Error(err)
		}
	})
	last := e.J.LastSeq()
	if err := e.close(); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "snapshots")) // recover from the journal alone
	runtime.GC()

	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		j := journal.New(filepath.Join(dir, "journal"))
		j.ReadOnly = true // writes nothing: every iteration recovers the same files
		if err := j.Open(ctx); err != nil {
			b.Fatal(err)
		}
		inv := inproc.NewInventory(j, filepath.Join(dir, "snapshots"))
		inv.ReadOnly = true
		if err := inv.Open(ctx); err != nil {
			b.Fatal(err)
		}
		if got := inv.AppliedSeq(); got != last {
			b.Fatalf("recovered up to seq %d, want %d", got, last)
		}
		inv.Close()
		j.Close()
	}
	b.ReportMetric(float64(last), "changes")
	b.ReportMetric(float64(last)*float64(b.N)/b.Elapsed().Seconds(), "changes/s")
	// CPU time of the whole process (the replaying goroutine and the GC), which
	// other load on the machine does not inflate the way it does wall time.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkMemory measures the heap per idle SKU and per hold with 1,000,000 SKUs,
// then one hold on each (distinct customers).
func BenchmarkMemory(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		e := benchEngine(b, true) // memory does not depend on fsync
		ctx := context.Background()
		heap := func() uint64 {
			runtime.GC()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapAlloc
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("sku-%07d", i)
		}
		h0 := heap()
		parallel(n, 256, func(i int) { mustPutB(b, e.Inv, ids[i], 10, 1) })
		h1 := heap()
		parallel(n, 256, func(i int) {
			if _, _, err := e.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: ids[i], CustomerID: fmt.Sprintf("customer-%07d", i), Quantity: 1}); err != nil {
				b.Error(err)
			}
		})
		h2 := heap()
		if st := e.Inv.Stats(); st.SKUs != n || st.Holds != n {
			b.Fatalf("Stats = %+v, want %d SKUs and holds", st, n)
		}
		b.ReportMetric(float64(h1-h0)/n, "bytes/sku")
		b.ReportMetric(float64(h2-h1)/n, "bytes/hold")
		runtime.KeepAlive(ids)
	}
}
