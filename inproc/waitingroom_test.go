package inproc_test

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
	"go.uber.org/goleak"
)

// MustOpenSQLite opens the SQLite file in dir (the room log's, the sessions').
func MustOpenSQLite(tb testing.TB, dir string) *sqlite.DB {
	tb.Helper()
	db := sqlite.NewDB(filepath.Join(dir, "revguard.db"))
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Error(err)
		}
	})
	return db
}

// MustOpenWaitingRoom opens a room over inv with its log in db, without its timer.
func MustOpenWaitingRoom(tb testing.TB, db *sqlite.DB, inv revguard.Inventory, now func() time.Time) *inproc.WaitingRoom {
	tb.Helper()
	w := inproc.NewWaitingRoom(sqlite.NewRoomLog(db), inv)
	w.Now = now
	w.Tick = 0
	if err := w.Open(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close() })
	return w
}

// TestWaitingRoom runs the conformance suite on the embedded room over the embedded
// inventory, its log in a real SQLite file.
func TestWaitingRoom(t *testing.T) {
	revguardtest.TestWaitingRoom(t, func(tb testing.TB, clock *revguardtest.Clock) (revguard.Inventory, revguard.WaitingRoom) {
		dir := tb.TempDir()
		inv := MustOpenEngine(tb, dir, clock.Now, nil).Inv
		return inv, MustOpenWaitingRoom(tb, MustOpenSQLite(tb, dir), inv, clock.Now)
	})
}

// TestWaitingRoom_Restart checks that a room rebuilt from its log has every place as
// it was: the pre-queue's draw, positions, admissions and their use.
func TestWaitingRoom_Restart(t *testing.T) {
	ctx := t.Context()
	clock := revguardtest.NewClock(time.Time{})
	dir := t.TempDir()
	inv := MustOpenEngine(t, dir, clock.Now, nil).Inv
	db := MustOpenSQLite(t, dir)
	w := MustOpenWaitingRoom(t, db, inv, clock.Now)

	opens := clock.Now().Add(time.Minute)
	if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 3, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: opens}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.PutRoom(ctx, "s", revguard.RoomSettings{PreQueueSeconds: 600, AdmitPerSecond: 2}); err != nil {
		t.Fatal(err)
	}
	var cs []string
	for i := range 20 {
		c := string(rune('a' + i))
		cs = append(cs, c)
		if _, _, err := w.Join(ctx, "s", c); err != nil {
			t.Fatal(err)
		}
	}
	clock.Set(opens)
	if err := w.Advance(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Join(ctx, "s", "late"); err != nil {
		t.Fatal(err)
	}
	cs = append(cs, "late")
	first := revguard.DrawOrder(mustRoom(t, w).Seed, cs[:20])[0]
	if ok, err := w.Claim(ctx, "s", first); !ok || err != nil {
		t.Fatalf("Claim of the first = %v, %v", ok, err)
	}
	if _, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "s", CustomerID: first, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Settle(ctx, "s", first, true); err != nil {
		t.Fatal(err)
	}
	before := placesOf(t, w, cs)
	roomBefore := mustRoom(t, w)
	w.Close()

	again := MustOpenWaitingRoom(t, db, inv, clock.Now)
	if after := placesOf(t, again, cs); !slices.Equal(before, after) {
		t.Fatalf("places after a restart:\n%v\nwant\n%v", after, before)
	}
	roomAfter := mustRoom(t, again)
	if string(roomAfter.Seed) != string(roomBefore.Seed) || roomAfter.Used != 1 || roomAfter.Admitted != 1 || roomAfter.Waiting != roomBefore.Waiting {
		t.Fatalf("room after a restart = %+v, want %+v", roomAfter, roomBefore)
	}
	// The pace and the stock go on from the recovered state: one more admitted.
	clock.Advance(time.Second)
	if err := again.Advance(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if r := mustRoom(t, again); r.Admitted != 2 {
		t.Fatalf("after a restart and a second: %d admitted, want 2 (3 units, 1 held)", r.Admitted)
	}
}

func mustRoom(t *testing.T, w *inproc.WaitingRoom) revguard.Room {
	t.Helper()
	r, err := w.FindRoom(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// placesOf renders the places of cs, for comparison.
func placesOf(t *testing.T, w *inproc.WaitingRoom, cs []string) []string {
	t.Helper()
	var out []string
	for _, c := range cs {
		p, err := w.FindPlace(t.Context(), "s", c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c+":"+string(p.Status)+":"+p.AdmittedUntil.String()+":"+time.Duration(p.Position).String())
	}
	return out
}

// TestWaitingRoom_Timer checks that Open's goroutine admits on its own, and that Close
// stops it.
func TestWaitingRoom_Timer(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inv := MustOpenEngine(t, dir, nil, nil).Inv
	db := MustOpenSQLite(t, dir)
	before := goleak.IgnoreCurrent()
	w := inproc.NewWaitingRoom(sqlite.NewRoomLog(db), inv)
	w.Tick = time.Millisecond
	if err := w.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 3, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.PutRoom(ctx, "s", revguard.RoomSettings{AdmitPerSecond: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Join(ctx, "s", "a"); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := w.FindPlace(ctx, "s", "a")
		if err != nil {
			t.Fatal(err)
		}
		if p.Status == revguard.PlaceAdmitted {
			break
		}
		time.Sleep(time.Millisecond)
	}
	w.Close()
	goleak.VerifyNone(t, before)
}

// TestWaitingRoom_TimerEmptyRoom checks that Open's goroutine keeps a room that
// nobody is in up to date: its sold_out follows the SKU's stock, down and up again.
func TestWaitingRoom_TimerEmptyRoom(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inv := MustOpenEngine(t, dir, nil, nil).Inv
	w := inproc.NewWaitingRoom(sqlite.NewRoomLog(MustOpenSQLite(t, dir)), inv)
	w.Tick = time.Millisecond
	if err := w.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	put := func(stock int64) {
		if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: stock, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
			t.Fatal(err)
		}
	}
	until := func(soldOut bool) {
		deadline := time.Now().Add(10 * time.Second)
		for mustRoom(t, w).SoldOut != soldOut {
			if time.Now().After(deadline) {
				t.Fatalf("the room's sold_out is not %v 10 s after the stock changed", soldOut)
			}
			time.Sleep(time.Millisecond)
		}
	}
	put(1)
	if _, _, err := w.PutRoom(ctx, "s", revguard.RoomSettings{AdmitPerSecond: 10}); err != nil {
		t.Fatal(err)
	}
	put(0)
	until(true)
	put(2)
	until(false)
}

// TestWaitingRoom_JoinReopensInOrder: a join that reopens a room closed for want of
// stock records the reopening, then itself, at a time no earlier. The join read its
// time before reopening the room, so its record came after the reopening's with an
// earlier time. The clock moves on at every reading, as a real one does.
func TestWaitingRoom_JoinReopensInOrder(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	var ticks atomic.Int64
	now := func() time.Time {
		return time.Unix(1_800_000_000, 0).Add(time.Duration(ticks.Add(1)) * time.Millisecond)
	}
	inv := MustOpenEngine(t, dir, now, nil).Inv
	db := MustOpenSQLite(t, dir)
	w := MustOpenWaitingRoom(t, db, inv, now)
	put := func(stock int64) {
		if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: stock, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
			t.Fatal(err)
		}
	}
	put(0)
	if _, _, err := w.PutRoom(ctx, "s", revguard.RoomSettings{AdmitPerSecond: 10}); err != nil {
		t.Fatal(err)
	}
	if err := w.Advance(ctx, "s"); err != nil { // closes it: nothing to sell
		t.Fatal(err)
	}
	put(3)
	if _, _, err := w.Join(ctx, "s", "c-1"); err != nil {
		t.Fatal(err)
	}
	var recs []revguard.RoomRecord
	if err := sqlite.NewRoomLog(db).ReadRoomRecords(ctx, "s", func(r revguard.RoomRecord) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var types []revguard.RoomRecordType
	for i, r := range recs {
		types = append(types, r.Type)
		if i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Errorf("record %d (%v) at %v, before record %d (%v) at %v", i, r.Type, r.Time, i-1, recs[i-1].Type, recs[i-1].Time)
		}
	}
	if !slices.Contains(types, revguard.RoomReopened) || types[len(types)-1] != revguard.RoomJoined {
		t.Fatalf("records %v: want a reopening, then the join", types)
	}
}

// BenchmarkFindPlace measures the room's read of a place, in a room of 100,000 places:
// what a poll costs beyond the HTTP server and the session lookup.
func BenchmarkFindPlace(b *testing.B) {
	clock := revguardtest.NewClock(time.Time{})
	dir := b.TempDir()
	inv := MustOpenEngine(b, dir, clock.Now, nil).Inv
	w := MustOpenWaitingRoom(b, MustOpenSQLite(b, dir), inv, clock.Now)
	ctx := b.Context()
	if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 100, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
		b.Fatal(err)
	}
	if _, _, err := w.PutRoom(ctx, "s", revguard.RoomSettings{AdmitPerSecond: 10}); err != nil {
		b.Fatal(err)
	}
	const places = 100_000
	revguardtest.JoinPlaces(b, w, "s", places)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := w.FindPlace(ctx, "s", fmt.Sprintf("c-%06d", i%places)); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}

// BenchmarkDraw measures the draw of a pre-queue of 100,000 customers: the shuffle,
// its 100,001 records committed to SQLite, and the line placed in memory (the room's
// lock is not held while the records are written). Run it with -benchtime 1x.
func BenchmarkDraw(b *testing.B) {
	revguardtest.BenchmarkDraw(b, 100_000, func(b *testing.B, clock *revguardtest.Clock) (revguard.Inventory, revguard.WaitingRoom, func()) {
		dir := b.TempDir()
		inv := MustOpenEngine(b, dir, clock.Now, nil).Inv
		return inv, MustOpenWaitingRoom(b, MustOpenSQLite(b, dir), inv, clock.Now), nil
	})
}
