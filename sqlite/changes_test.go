package sqlite_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/sqlite"
)

func change(seq uint64, typ revguard.ChangeType, t time.Time) revguard.Change {
	return revguard.Change{Seq: seq, Type: typ, SKU: "s", Time: t, Body: []byte(`{"seq":` + revguard.ChangeID(seq)[4:] + `}`)}
}

// TestChangeLog appends batches, reads them back, and keeps the position and the
// counts with them; a replayed batch changes nothing, a gap in seqs fails.
func TestChangeLog(t *testing.T) {
	ctx := t.Context()
	l := sqlite.NewChangeLog(MustOpenDB(t))
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	counts := []revguard.SKUCounts{{SKU: "s", Stock: 5, Held: 2, Sold: 1, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: t0}}
	if err := l.AppendChanges(ctx, []revguard.Change{change(1, revguard.ChangeSKUCreated, t0), change(2, revguard.ChangeHeld, t0)}, 7, counts); err != nil {
		t.Fatal(err)
	}
	// The same batch again (a restart before the writer knew it was in): nothing.
	if err := l.AppendChanges(ctx, []revguard.Change{change(1, revguard.ChangeSKUCreated, t0)}, 7, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendChanges(ctx, []revguard.Change{change(5, revguard.ChangeHeld, t0)}, 9, nil); err == nil {
		t.Fatal("a gap in seqs was accepted")
	}
	// Events that make no change still move the position.
	if err := l.AppendChanges(ctx, nil, 8, nil); err != nil {
		t.Fatal(err)
	}
	st, err := l.LoadChangeState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (revguard.ChangeState{JournalSeq: 8, LastSeq: 2, SKUs: map[string]revguard.SKUCounts{"s": counts[0]}}); !reflect.DeepEqual(st, want) {
		t.Fatalf("state %+v; want %+v", st, want)
	}
	got, err := l.ReadChanges(ctx, 1, 10)
	if err != nil || len(got) != 1 || got[0].Seq != 2 || got[0].Type != revguard.ChangeHeld || string(got[0].Body) != `{"seq":2}` || !got[0].Time.Equal(t0) {
		t.Fatalf("ReadChanges after 1: %+v, %v", got, err)
	}
	if got, err := l.ReadChanges(ctx, 2, 10); err != nil || len(got) != 0 {
		t.Fatalf("ReadChanges at the end: %+v, %v", got, err)
	}

	// Pruning drops the changes before a time, oldest first.
	if err := l.AppendChanges(ctx, []revguard.Change{change(3, revguard.ChangeConfirmed, t0.Add(time.Hour))}, 10, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := l.PruneChanges(ctx, t0.Add(time.Minute)); err != nil || n != 2 {
		t.Fatalf("PruneChanges = %d, %v; want 2", n, err)
	}
	if got, err := l.ReadChanges(ctx, 0, 10); err != nil || len(got) != 1 || got[0].Seq != 3 {
		t.Fatalf("after pruning: %+v, %v", got, err)
	}
}

// TestChangeLog_Seed starts a log from the ledger it shares a file with: the ledger's
// position and each SKU's held and sold units.
func TestChangeLog_Seed(t *testing.T) {
	ctx := t.Context()
	db := MustOpenDB(t)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	events := []revguard.Event{
		{Seq: 1, Type: revguard.EventSKUPut, SKU: "s", Time: t0, Stock: 10, PerCustomerLimit: 2, HoldSeconds: 60},
		{Seq: 2, Type: revguard.EventReserved, SKU: "s", Time: t0, ReservationID: "r1", CustomerID: "a", Quantity: 2, ExpiresAt: t0.Add(time.Minute)},
		{Seq: 3, Type: revguard.EventReserved, SKU: "s", Time: t0, ReservationID: "r2", CustomerID: "b", Quantity: 1, ExpiresAt: t0.Add(time.Minute)},
		{Seq: 4, Type: revguard.EventConfirmed, SKU: "s", Time: t0, ReservationID: "r1", CustomerID: "a", Quantity: 2},
		{Seq: 5, Type: revguard.EventReserved, SKU: "s", Time: t0, ReservationID: "r3", CustomerID: "c", Quantity: 1, ExpiresAt: t0.Add(time.Minute)},
		{Seq: 6, Type: revguard.EventReleased, SKU: "s", Time: t0, ReservationID: "r3", CustomerID: "c", Quantity: 1},
	}
	if err := sqlite.NewLedger(db).ApplyEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	l := sqlite.NewChangeLog(db)
	if err := l.SeedChanges(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := l.LoadChangeState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := revguard.SKUCounts{SKU: "s", Stock: 10, Held: 1, Sold: 2, PerCustomerLimit: 2, HoldSeconds: 60}
	if st.JournalSeq != 6 || st.LastSeq != 0 || st.SKUs["s"] != want {
		t.Fatalf("seeded %+v; want journal seq 6 and %+v", st, want)
	}
	// A log that has followed the journal is not seeded again.
	if err := l.AppendChanges(ctx, nil, 7, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.SeedChanges(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := l.LoadChangeState(ctx); st.JournalSeq != 7 {
		t.Fatalf("seeded again: %+v", st)
	}
}
