package sqlite_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
)

// mustOpenJournal opens a journal in dir, closed at the end of the test.
func mustOpenJournal(tb testing.TB, dir string, noSync bool) *journal.Journal {
	tb.Helper()
	j := journal.New(dir)
	j.NoSync = noSync
	j.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := j.Open(tb.Context()); err != nil {
		tb.Fatalf("open journal: %v", err)
	}
	tb.Cleanup(func() { j.Close() })
	return j
}

// runWriter starts w in a goroutine and returns a func that stops it and waits for Run
// to return.
func runWriter(tb testing.TB, w *revguard.LedgerWriter) (stop func()) {
	tb.Helper()
	if w.Logger == nil {
		w.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("LedgerWriter.Run: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// appendLog journals the events of log (their Seq is reassigned by the journal, which
// must give the same numbers: both count from 1) and waits until they are durable.
func appendLog(tb testing.TB, j *journal.Journal, events []revguard.Event) {
	tb.Helper()
	var last uint64
	for i := range events {
		ev := events[i]
		seq, err := j.Append(&ev)
		if err != nil {
			tb.Fatal(err)
		}
		if seq != events[i].Seq {
			tb.Fatalf("journal gave seq %d to event %d", seq, events[i].Seq)
		}
		last = seq
		// A batch is written to one segment whatever its size: wait every 32 events
		// so that a small SegmentSize gives the many segments compaction tests need
		// (all of them in one batch left one segment and nothing to compact).
		if i%32 == 31 {
			if err := j.Wait(tb.Context(), last); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := j.Wait(tb.Context(), last); err != nil {
		tb.Fatal(err)
	}
}

// TestLedgerWriter_Journal follows a real journal into a real ledger, across a restart
// of the writer and the database, and checks that the journal may compact only what the
// ledger holds.
func TestLedgerWriter_Journal(t *testing.T) {
	dir := t.TempDir()
	j := mustOpenJournal(t, filepath.Join(dir, "journal"), false)
	j.SegmentSize = 4 << 10 // many segments, so that compaction has something to do
	path := filepath.Join(dir, "revguard.db")

	var log revguardtest.EventLog
	var holds []revguard.Event
	for i := range 300 {
		holds = append(holds, log.Reserve(fmt.Sprintf("sku-%d", i%7), fmt.Sprintf("c-%d", i), 1))
	}
	for i, r := range holds {
		switch i % 4 {
		case 0:
			log.Change(revguard.EventConfirmed, r, fmt.Sprintf("order-%d", i), false)
		case 1:
			log.Change(revguard.EventReleased, r, "", false)
		case 2:
			log.Change(revguard.EventExpired, r, "", false)
		}
	}
	half := len(log.Events) / 2
	appendLog(t, j, log.Events[:half])

	db := sqlite.NewDB(path)
	if err := db.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	l := sqlite.NewLedger(db)
	w := &revguard.LedgerWriter{Feed: j, Ledger: l, BatchSize: 64}
	stop := runWriter(t, w)
	waitFor(t, w, uint64(half))
	stop()
	db.Close()

	// The second half arrives while nothing follows the journal; then the writer
	// resumes on the reopened database, from the ledger's own position.
	appendLog(t, j, log.Events[half:])
	l = sqlite.NewLedger(MustOpenDBAt(t, path, time.Now))
	w = &revguard.LedgerWriter{Feed: j, Ledger: l, BatchSize: 64}
	runWriter(t, w)
	waitFor(t, w, uint64(len(log.Events)))
	revguardtest.CheckReservations(t, revguardtest.AllOrders(t, l, revguard.OrderFilter{}), log.Expect())

	waitDurable(t, w, uint64(len(log.Events)))
	if err := j.Compact(j.Durable()); err != nil {
		t.Fatal(err)
	}
	if first := j.FirstSeq(); first > w.Durable()+1 {
		t.Fatalf("journal compacted up to %d, beyond the ledger's durable %d", first, w.Durable())
	}
	if j.FirstSeq() <= 1 {
		t.Fatalf("journal kept everything (first seq %d) although the ledger consumed it", j.FirstSeq())
	}
}

func waitFor(tb testing.TB, w *revguard.LedgerWriter, seq uint64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WaitApplied(ctx, seq); err != nil {
		tb.Fatalf("ledger writer stuck at %d, want %d: %v", w.Applied(), seq, err)
	}
}

// waitDurable waits until w has made every event up to seq durable (Ledger.Sync) and
// reported it consumed.
func waitDurable(tb testing.TB, w *revguard.LedgerWriter, seq uint64) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.Durable() < seq {
		if time.Now().After(deadline) {
			tb.Fatalf("ledger writer durable at %d, want %d", w.Durable(), seq)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkLedgerWriter_CatchUp appends a burst of 100,000 reservation events to a real,
// fsynced journal as fast as the journal takes them (faster than the hot path's peak:
// one goroutine appends without waiting, then waits for the last group commit), with
// the writer following all along, and reports how long after the burst was durable the
// ledger held every event ("lag-to-zero-s"), and every event was durable there and
// reported consumed to the journal ("durable-lag-s"), and the burst's rate.
func BenchmarkLedgerWriter_CatchUp(b *testing.B) {
	const burst = 100_000
	events := make([]revguard.Event, burst)
	now := time.Now()
	for i := range events {
		events[i] = revguard.Event{Type: revguard.EventReserved, Time: now, SKU: fmt.Sprintf("sku-%d", i%100),
			ReservationID: ulid.Make().String(), CustomerID: fmt.Sprintf("c-%d", i), Quantity: 1,
			ExpiresAt: now.Add(10 * time.Minute)}
	}
	var catchUp, durable, burstDur time.Duration
	for b.Loop() {
		dir := b.TempDir()
		j := mustOpenJournal(b, filepath.Join(dir, "journal"), false)
		l := sqlite.NewLedger(MustOpenDBAt(b, filepath.Join(dir, "revguard.db"), time.Now))
		w := &revguard.LedgerWriter{Feed: j, Ledger: l}
		stop := runWriter(b, w)

		start := time.Now()
		var last uint64
		for i := range events {
			ev := events[i]
			seq, err := j.Append(&ev)
			if err != nil {
				b.Fatal(err)
			}
			last = seq
		}
		if err := j.Wait(b.Context(), last); err != nil {
			b.Fatal(err)
		}
		end := time.Now()
		waitFor(b, w, last)
		catchUp += time.Since(end)
		waitDurable(b, w, last)
		durable += time.Since(end)
		burstDur += end.Sub(start)
		stop()
	}
	b.ReportMetric(catchUp.Seconds()/float64(b.N), "lag-to-zero-s")
	b.ReportMetric(durable.Seconds()/float64(b.N), "durable-lag-s")
	b.ReportMetric(burst/(burstDur.Seconds()/float64(b.N)), "burst-events/s")
}
