package sqlite_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
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
