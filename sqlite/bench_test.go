package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/sqlite"
)

// eventGen makes batches of a realistic event mix: half of each batch creates holds,
// the other half ends earlier ones (60% confirmed, 20% released, 20% expired), with
// journal seqs and ULID-like ids that keep increasing across batches, and customers
// spread over the customer index.
type eventGen struct {
	seq uint64
	n   int
	t   time.Time
}

func (g *eventGen) batch(dst []revguard.Event, size int) []revguard.Event {
	dst = dst[:0]
	half := size / 2
	// The second half ends the holds made by the previous batch: holds last minutes, so
	// a reservation and its outcome rarely share a batch.
	prev := g.n - half
	for range half {
		g.seq++
		g.n++
		dst = append(dst, revguard.Event{Seq: g.seq, Type: revguard.EventReserved, Time: g.t.Add(time.Duration(g.seq)),
			SKU: fmt.Sprintf("sku-%d", g.n%100), ReservationID: benchID(g.n),
			CustomerID: fmt.Sprintf("cust-%d", g.n*7919%1000003), Quantity: 1, ExpiresAt: g.t.Add(10 * time.Minute),
			IdempotencyKey: "k"})
	}
	for i := range size - half {
		g.seq++
		n := prev + 1 + i
		if n < 1 { // the first batch: nothing to end yet, more holds instead
			g.n++
			dst = append(dst, revguard.Event{Seq: g.seq, Type: revguard.EventReserved, Time: g.t.Add(time.Duration(g.seq)),
				SKU: "sku-0", ReservationID: benchID(g.n), CustomerID: "first", Quantity: 1, ExpiresAt: g.t.Add(10 * time.Minute)})
			continue
		}
		ev := revguard.Event{Seq: g.seq, Time: g.t.Add(time.Duration(g.seq)), SKU: fmt.Sprintf("sku-%d", n%100),
			ReservationID: benchID(n), Quantity: 1}
		switch n % 5 {
		case 0, 1, 2:
			ev.Type, ev.OrderRef = revguard.EventConfirmed, "order"
		case 3:
			ev.Type = revguard.EventReleased
		default:
			ev.Type = revguard.EventExpired
		}
		dst = append(dst, ev)
	}
	return dst
}

// benchID returns the n-th reservation id: fixed width, so that ids sort in creation
// order as ULIDs do.
func benchID(n int) string { return fmt.Sprintf("01BENCH%019d", n) }

// BenchmarkLedger_ApplyEvents measures the ledger's durable apply throughput on a real
// file: one transaction per batch, and beside it Sync (an fsync of the WAL) whenever a
// batch was committed since the last one, as LedgerWriter runs them. events/s counts
// the time until the last batch is durable.
func BenchmarkLedger_ApplyEvents(b *testing.B) {
	for _, size := range []int{256, 1024, 4096} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			l := sqlite.NewLedger(MustOpenDB(b))
			g := eventGen{t: time.Now()}
			buf := make([]revguard.Event, 0, size)
			kick, syncs := make(chan struct{}, 1), make(chan error)
			// The sync goroutine: started here, it ends when kick is closed.
			go func() {
				for range kick {
					if _, err := l.Sync(context.Background()); err != nil {
						syncs <- err
						return
					}
				}
				close(syncs)
			}()
			b.ReportAllocs()
			cpu0, start := cpuTime(), time.Now()
			for b.Loop() {
				buf = g.batch(buf, size)
				if err := l.ApplyEvents(b.Context(), buf); err != nil {
					b.Fatal(err)
				}
				select {
				case kick <- struct{}{}:
				default:
				}
			}
			close(kick)
			if err := <-syncs; err != nil {
				b.Fatal(err)
			}
			if _, err := l.Sync(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "events/s")
			// CPU per event tells the cost apart from other load on a shared machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*size), "cpu-ns/event")
		})
	}
}

// cpuTime returns the process's CPU time (user and system) so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSQLiteBaseline is the yardstick of the machine: plain 256-row transactions
// into a table without secondary indexes, through the same driver and pragmas
// (STYLE.md quotes about 360,000 rows/s for this on an idle machine of this kind).
// Compare BenchmarkLedger_ApplyEvents with it in the same run on a shared machine.
func BenchmarkSQLiteBaseline(b *testing.B) {
	dsn := "file:" + filepath.Join(b.TempDir(), "base.db") +
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE t (id TEXT PRIMARY KEY, sku TEXT, customer_id TEXT, quantity INTEGER, created_at INTEGER)`); err != nil {
		b.Fatal(err)
	}
	const rows = 256
	n := 0
	cpu0 := cpuTime()
	for b.Loop() {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		st, err := tx.Prepare(`INSERT INTO t VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		for range rows {
			n++
			if _, err := st.Exec(benchID(n), "sku", "cust", 1, n); err != nil {
				b.Fatal(err)
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*rows), "cpu-ns/row")
}
