package sqlite_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
)

// TestChangeWriter follows a real journal into the change log, is stopped and started
// again over more events, and ends with each change once, in seq order.
func TestChangeWriter(t *testing.T) {
	dir := t.TempDir()
	j := mustOpenJournal(t, filepath.Join(dir, "journal"), true)
	db := MustOpenDB(t)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ev := func(typ revguard.EventType, id string) revguard.Event {
		return revguard.Event{Type: typ, SKU: "s", Time: t0, ReservationID: id, CustomerID: "c", Quantity: 1, ExpiresAt: t0.Add(time.Hour)}
	}
	seq := uint64(0)
	journalize := func(events ...revguard.Event) {
		for i := range events {
			seq++
			events[i].Seq = seq
		}
		appendLog(t, j, events)
	}
	journalize(revguard.Event{Type: revguard.EventSKUPut, SKU: "s", Time: t0, Stock: 2, PerCustomerLimit: 2, HoldSeconds: 60},
		ev(revguard.EventReserved, "r1"), ev(revguard.EventReserved, "r2"))
	run := func() (*revguard.ChangeWriter, func()) {
		w := &revguard.ChangeWriter{Feed: j, Log: sqlite.NewChangeLog(db), FirstSeq: j.FirstSeq,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return w, stop
	}
	waitFor := func(w *revguard.ChangeWriter, seq uint64) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := w.WaitChanges(ctx, seq-1); err != nil {
			t.Fatalf("change %d never came: %v", seq, err)
		}
	}
	w, stop := run()
	waitFor(w, 4) // created, held, held, sold_out
	stop()
	// A writer that has not yet loaded the log (a process starting) reads its newest
	// change from the log itself, where LastChange does not know it yet.
	idle := &revguard.ChangeWriter{Feed: j, Log: sqlite.NewChangeLog(db)}
	if got, err := idle.ReadLastChange(t.Context()); err != nil || got != 4 || idle.LastChange() != 0 {
		t.Fatalf("before Run: ReadLastChange %d, %v, LastChange %d; want 4, nil, 0", got, err, idle.LastChange())
	}
	journalize(ev(revguard.EventReleased, "r1"), ev(revguard.EventConfirmed, "r2"))
	w, _ = run()
	waitFor(w, 6)
	got, err := w.ReadChanges(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []revguard.ChangeType{revguard.ChangeSKUCreated, revguard.ChangeHeld, revguard.ChangeHeld,
		revguard.ChangeSKUSoldOut, revguard.ChangeReleased, revguard.ChangeConfirmed}
	if len(got) != len(want) {
		t.Fatalf("%d changes; want %d: %+v", len(got), len(want), got)
	}
	for i, c := range got {
		if c.Seq != uint64(i+1) || c.Type != want[i] {
			t.Fatalf("change %d: %d %s; want %s", i, c.Seq, c.Type, want[i])
		}
	}
	if w.JournalSeq() != 5 || w.LastChange() != 6 {
		t.Fatalf("journal seq %d, last change %d; want 5 and 6", w.JournalSeq(), w.LastChange())
	}
}

// TestChangeWriter_StandsAsideAtPeaks: while the hot path is at a peak the writer
// leaves the events in the journal; once it ends, they become changes.
func TestChangeWriter_StandsAsideAtPeaks(t *testing.T) {
	j := mustOpenJournal(t, filepath.Join(t.TempDir(), "journal"), true)
	var atPeak atomic.Bool
	atPeak.Store(true)
	w := &revguard.ChangeWriter{Feed: j, Log: sqlite.NewChangeLog(MustOpenDB(t)), FirstSeq: j.FirstSeq,
		Peak: atPeak.Load, PeakPoll: time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	appendLog(t, j, []revguard.Event{{Seq: 1, Type: revguard.EventSKUPut, SKU: "s", Time: time.Now(), Stock: 1, PerCustomerLimit: 1, HoldSeconds: 60}})
	wctx, wcancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer wcancel()
	if err := w.WaitChanges(wctx, 0); err == nil {
		t.Fatal("a change was written at a peak")
	}
	atPeak.Store(false)
	wctx, wcancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := w.WaitChanges(wctx, 0); err != nil {
		t.Fatalf("no change after the peak: %v", err)
	}
}

// TestChangeWriter_SeedsAfterCompaction is the first start of a change log beside a
// ledger whose journal has already dropped its first events (a server upgraded to a
// version with the change log): the log starts from the ledger's position and counts,
// follows the journal from there, and ends with the counts that the whole history
// gives.
func TestChangeWriter_SeedsAfterCompaction(t *testing.T) {
	dir := t.TempDir()
	j := mustOpenJournal(t, filepath.Join(dir, "journal"), false)
	j.SegmentSize = 4 << 10
	var log revguardtest.EventLog
	for i := range 3 {
		log.PutSKU(fmt.Sprintf("sku-%d", i), 1000)
	}
	var holds []revguard.Event
	for i := range 400 {
		holds = append(holds, log.Reserve(fmt.Sprintf("sku-%d", i%3), fmt.Sprintf("c-%d", i), 1+int64(i%2)))
	}
	for i, r := range holds {
		switch i % 3 {
		case 0:
			log.Change(revguard.EventConfirmed, r, "", false)
		case 1:
			log.Change(revguard.EventReleased, r, "", false)
		}
	}
	half := len(log.Events) / 2
	appendLog(t, j, log.Events[:half])
	db := MustOpenDB(t)
	lw := &revguard.LedgerWriter{Feed: j, Ledger: sqlite.NewLedger(db), BatchSize: 64}
	stop := runWriter(t, lw)
	waitFor(t, lw, uint64(half))
	waitDurable(t, lw, uint64(half))
	// The writer tells the journal what it consumed just after its position is
	// durable: compact once the journal knows.
	for deadline := time.Now().Add(10 * time.Second); j.FirstSeq() <= 1; time.Sleep(time.Millisecond) {
		if err := j.Compact(j.Durable()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing compacted (first seq %d)", j.FirstSeq())
		}
	}
	stop()
	appendLog(t, j, log.Events[half:])

	w := &revguard.ChangeWriter{Feed: j, Log: sqlite.NewChangeLog(db), FirstSeq: j.FirstSeq,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(20 * time.Second); w.JournalSeq() < uint64(len(log.Events)); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the change writer is at %d of %d", w.JournalSeq(), len(log.Events))
		}
	}
	st, err := sqlite.NewChangeLog(db).LoadChangeState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	whole := revguard.NewChanges(revguard.ChangeState{})
	for i := range log.Events {
		whole.Apply(nil, &log.Events[i])
	}
	if !reflect.DeepEqual(st.SKUs, whole.SKUs) {
		t.Fatalf("counts after seeding and following\n got %+v\nwant %+v", st.SKUs, whole.SKUs)
	}
	// The first change is the one after the ledger's position, not from the start.
	got, err := w.ReadChanges(t.Context(), 0, 1)
	if err != nil || len(got) != 1 || got[0].Type == revguard.ChangeSKUCreated {
		t.Fatalf("first change %+v, %v; want one after the seed", got, err)
	}
}
