package inproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/revguardtest"
)

// appendSKURecord encodes s and its reservations as one SKU record, all at once.
func appendSKURecord(buf []byte, s *sku) []byte {
	buf, all := appendSKUHead(buf, s)
	return appendReservations(buf, all, nil)
}

// testEngine opens an Inventory on dir with the given clock and settings.
func testEngine(t testing.TB, dir string, clock *revguardtest.Clock, edit func(j *journal.Journal, inv *Inventory)) (*Inventory, error) {
	t.Helper()
	j := journal.New(filepath.Join(dir, "journal"))
	j.Logger = slog.New(slog.DiscardHandler)
	inv := NewInventory(j, filepath.Join(dir, "snapshots"))
	inv.Logger = slog.New(slog.DiscardHandler)
	inv.Now = clock.Now
	if edit != nil {
		edit(j, inv)
	}
	if err := j.Open(context.Background()); err != nil {
		return nil, err
	}
	if err := inv.Open(context.Background()); err != nil {
		j.Close()
		return nil, err
	}
	return inv, nil
}

func mustEngine(t testing.TB, dir string, clock *revguardtest.Clock, edit func(j *journal.Journal, inv *Inventory)) *Inventory {
	t.Helper()
	inv, err := testEngine(t, dir, clock, edit)
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	return inv
}

// crash stops inv as a SIGKILL would, as far as the files go: no final snapshot; the
// journal is closed (what was appended is flushed, as it would be by the fsync that
// acknowledged it).
func crash(inv *Inventory) {
	inv.state.Store(stateClosed)
	close(inv.stop)
	inv.wg.Wait()
	inv.Journal.Close()
}

// state is everything an Inventory knows, in a comparable form.
type state struct {
	SKUs  []revguard.SKU
	Res   []revguard.Reservation
	Stats Stats
}

// dump expires the holds that are due (as any read would), then reads everything.
func dump(inv *Inventory) state {
	var st state
	inv.ForEachSKU(func(s revguard.SKU) bool {
		inv.FindSKU(context.Background(), s.ID)
		return true
	})
	inv.ForEachSKU(func(s revguard.SKU) bool { st.SKUs = append(st.SKUs, s); return true })
	inv.ForEachReservation(func(r revguard.Reservation) bool { st.Res = append(st.Res, r); return true })
	slices.SortFunc(st.SKUs, func(a, b revguard.SKU) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Res, func(a, b revguard.Reservation) int { return strings.Compare(a.ID, b.ID) })
	st.Stats = inv.Stats()
	return st
}

func sameState(t *testing.T, what string, got, want state) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: recovered state differs:\n got %d SKUs %d reservations %+v\nwant %d SKUs %d reservations %+v",
			what, len(got.SKUs), len(got.Res), got.Stats, len(want.SKUs), len(want.Res), want.Stats)
	}
	if len(want.Res) == 0 {
		t.Fatalf("%s: the workload made no reservation", what)
	}
}

// workload makes every kind of change on a few SKUs, from several goroutines,
// including idempotency keys, expiries (the clock moves), revives and restocks.
func workload(t testing.TB, inv *Inventory, clock *revguardtest.Clock, tag string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range 4 { // create or restock
		id := fmt.Sprintf("sku-%d", i)
		old, _ := inv.FindSKU(ctx, id)
		if _, _, err := inv.PutSKU(ctx, id, revguard.SKUUpdate{Stock: old.Stock + int64(20+n), PerCustomerLimit: 3, HoldSeconds: 5}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range n {
				customer := fmt.Sprintf("%s-c%d", tag, (g*n+i)%7)
				req := revguard.ReserveRequest{SKU: fmt.Sprintf("sku-%d", (g+i)%4), CustomerID: customer, Quantity: 1}
				if i%3 == 0 {
					req.IdempotencyKey = fmt.Sprintf("%s-k%d-%d", tag, g, i)
				}
				r, _, err := inv.Reserve(ctx, req)
				if err != nil {
					continue
				}
				switch i % 5 {
				case 0:
					inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: customer, OrderRef: "o-" + r.ID})
				case 1:
					inv.Release(ctx, r.ID, "")
				case 2:
					clock.Advance(time.Second)
					if _, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: customer}); revguard.ErrorCode(err) == revguard.CodeHoldExpired {
						inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: customer, Revive: true})
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestRecoverFromJournalOnly(t *testing.T) {
	dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
	inv := mustEngine(t, dir, clock, nil)
	workload(t, inv, clock, "a", 60)
	want := dump(inv)
	crash(inv)
	if seqs, _ := listSnapshots(filepath.Join(dir, "snapshots")); len(seqs) != 0 {
		t.Fatalf("snapshots %v written, want none", seqs)
	}
	inv = mustEngine(t, dir, clock, nil)
	defer crash(inv)
	sameState(t, "replay", dump(inv), want)
	// Idempotency keys survive the restart.
	r := want.Res[0]
	inv.idem.Range(func(k, v any) bool {
		if rr, ok := v.(*reservation); ok {
			r = rr.createdView()
			return false
		}
		return true
	})
	key := inv.findRes(r.ID).idemKey()
	got, found, err := inv.FindIdempotent(t.Context(), revguard.ReserveRequest{SKU: r.SKU, CustomerID: r.CustomerID, Quantity: r.Quantity, IdempotencyKey: key})
	if err != nil || !found || got.ID != r.ID {
		t.Fatalf("FindIdempotent after restart = %s, %v, %v; want %s", got.ID, found, err, r.ID)
	}
}

func TestRecoverFromSnapshotAndJournal(t *testing.T) {
	dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
	inv := mustEngine(t, dir, clock, nil)
	workload(t, inv, clock, "a", 40)
	if err := inv.Close(); err != nil { // final snapshot
		t.Fatal(err)
	}
	inv.Journal.Close()

	inv = mustEngine(t, dir, clock, nil)
	if inv.lastSnap == 0 {
		t.Fatal("no snapshot loaded")
	}
	workload(t, inv, clock, "b", 40) // after the snapshot: replayed from the journal
	want := dump(inv)
	crash(inv)
	inv = mustEngine(t, dir, clock, nil)
	defer crash(inv)
	sameState(t, "snapshot + replay", dump(inv), want)
}

// TestRecoverSkipsEventsInSnapshot takes a snapshot whose S0 is older than the SKUs it
// copied, as happens when changes run while it is written: recovery must skip, per
// SKU, the events after S0 that the snapshot already holds.
func TestRecoverSkipsEventsInSnapshot(t *testing.T) {
	dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
	inv := mustEngine(t, dir, clock, nil)
	workload(t, inv, clock, "a", 30)
	s0 := inv.Journal.Durable()
	workload(t, inv, clock, "b", 30) // these changes are in the journal after S0 and in the snapshot
	name := filepath.Join(inv.Dir, snapName(s0))
	if _, _, err := inv.writeSnapshot(name, s0); err != nil {
		t.Fatal(err)
	}
	workload(t, inv, clock, "c", 30) // and these only in the journal
	recoversFrom(t, dir, clock, inv, s0, "snapshot older than its SKUs")
}

// recoversFrom crashes inv and checks that it recovers, from the snapshot s0 and the
// journal, the state it had.
func recoversFrom(t *testing.T, dir string, clock *revguardtest.Clock, inv *Inventory, s0 uint64, what string) {
	t.Helper()
	want := dump(inv)
	crash(inv)
	inv = mustEngine(t, dir, clock, nil)
	defer crash(inv)
	if inv.lastSnap != s0 {
		t.Fatalf("loaded snapshot %d, want %d", inv.lastSnap, s0)
	}
	sameState(t, what, dump(inv), want)
}

func TestSnapshotDamagedFallsBack(t *testing.T) {
	dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
	var want state
	for round, tag := range []string{"a", "b", "c"} { // three snapshots; two are kept
		inv := mustEngine(t, dir, clock, nil)
		workload(t, inv, clock, tag, 30)
		want = dump(inv)
		if round == 2 {
			crash(inv) // the last changes are in the journal only
			break
		}
		if err := inv.Close(); err != nil {
			t.Fatal(err)
		}
		inv.Journal.Close()
	}
	snapDir := filepath.Join(dir, "snapshots")
	seqs, _ := listSnapshots(snapDir)
	if len(seqs) != 2 {
		t.Fatalf("snapshots %v, want the newest 2", seqs)
	}
	// Flip one byte in the middle of the newest snapshot.
	newest := filepath.Join(snapDir, snapName(seqs[0]))
	data, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(newest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inv := mustEngine(t, dir, clock, nil)
	defer crash(inv)
	if inv.lastSnap != seqs[1] {
		t.Fatalf("loaded snapshot %d, want the older %d", inv.lastSnap, seqs[1])
	}
	sameState(t, "fallback to the older snapshot", dump(inv), want)
}

// TestJournalCompactedAndBounded runs many changes with frequent snapshots and a
// follower that consumes everything: the journal must shrink, recovery must still be
// exact, and with every snapshot damaged Open must fail clearly rather than lose data.
func TestJournalCompactedAndBounded(t *testing.T) {
	dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
	small := func(j *journal.Journal, inv *Inventory) {
		j.SegmentSize = 8 << 10
		inv.SnapshotEvery = 200
	}
	inv := mustEngine(t, dir, clock, small)
	stop := make(chan struct{})
	var follower sync.WaitGroup
	follower.Go(func() { // a ledger that keeps up; exits when stop is closed
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				inv.Journal.Consumed(inv.Journal.Durable())
			}
		}
	})
	for round := range 5 {
		workload(t, inv, clock, fmt.Sprintf("r%d", round), 100)
	}
	close(stop)
	follower.Wait()
	inv.Journal.Consumed(inv.Journal.Durable())
	if err := inv.snapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := inv.snapshot(t.Context()); err != nil { // nothing new: no snapshot
		t.Fatal(err)
	}
	workload(t, inv, clock, "last", 20)
	if err := inv.snapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	last, first := inv.Journal.LastSeq(), inv.Journal.FirstSeq()
	if first <= 1 || last-first > 2*200+2000 {
		t.Fatalf("journal holds seqs %d to %d after compaction; want it bounded by about two snapshot intervals", first, last)
	}
	want := dump(inv)
	crash(inv)

	inv = mustEngine(t, dir, clock, small)
	sameState(t, "after compaction", dump(inv), want)
	crash(inv)

	// Damage every snapshot: the journal no longer has the early events.
	snapDir := filepath.Join(dir, "snapshots")
	seqs, _ := listSnapshots(snapDir)
	for _, s := range seqs {
		if err := os.WriteFile(filepath.Join(snapDir, snapName(s)), []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := testEngine(t, dir, clock, small)
	if !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), "damaged snapshots") {
		t.Fatalf("Open with every snapshot damaged = %v; want a clear error wrapping journal.ErrCorrupt", err)
	}
}

// TestSnapshotInterval: the next snapshot comes SnapshotEvery changes after one, or as
// many changes as it held reservations when that is more, so that a large state is not
// copied again every SnapshotEvery changes.
func TestSnapshotInterval(t *testing.T) {
	ctx := context.Background()
	clock := revguardtest.NewClock(time.Time{})
	inv := mustEngine(t, t.TempDir(), clock, func(_ *journal.Journal, inv *Inventory) { inv.SnapshotEvery = 100 })
	defer inv.Close()
	if _, _, err := inv.PutSKU(ctx, "big", revguard.SKUUpdate{Stock: 1000, PerCustomerLimit: 1000, HoldSeconds: 3600}); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		if _, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "big", CustomerID: fmt.Sprintf("c%d", i), Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := inv.snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	inv.snapMu.Lock()
	last := inv.lastSnap
	inv.snapMu.Unlock()
	if last != inv.Journal.LastSeq() {
		t.Fatalf("snapshot at seq %d, want %d", last, inv.Journal.LastSeq())
	}
	if got, want := inv.snapNext.Load(), last+n; got != want {
		t.Fatalf("next snapshot at seq %d, want %d (%d changes after one of %d reservations, not SnapshotEvery = 100)", got, want, n, n)
	}
	if got, want := snapshotInterval(100, 30), uint64(100); got != want {
		t.Fatalf("snapshotInterval(100, 30) = %d, want %d", got, want)
	}
}

// TestSnapshotWhileChanging: a SKU with more reservations than snapChunk is encoded in
// parts, its lock released in between, while the engine goes on. Changes made then to
// reservations already copied (confirms, releases, expiries, revives) and new
// reservations must stay out of the snapshot, whose SKUs stand at their copied last
// seq: recovery replays those changes from the journal, and would count them twice
// (or refuse them) if the snapshot held them already.
func TestSnapshotWhileChanging(t *testing.T) {
	defer func(n int) { snapChunk = n }(snapChunk)
	snapChunk = 3
	ctx := context.Background()
	dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
	inv := mustEngine(t, dir, clock, nil)
	workload(t, inv, clock, "a", 40)
	var held []revguard.Reservation // four per SKU, half with an idempotency key
	for i := range 16 {
		sku := fmt.Sprintf("sku-%d", i%4)
		if i < 4 {
			old, _ := inv.FindSKU(ctx, sku)
			if _, _, err := inv.PutSKU(ctx, sku, revguard.SKUUpdate{Stock: old.Stock + 4, PerCustomerLimit: 3, HoldSeconds: 5}); err != nil {
				t.Fatal(err)
			}
		}
		r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: sku,
			CustomerID: fmt.Sprintf("held-%d", i), Quantity: 1, IdempotencyKey: fmt.Sprintf("k%d", i%2)})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	copied, first := 0, ""
	inv.snapCopied = func(sku string) {
		copied++
		if copied > 1 {
			return
		}
		// Change each hold of the SKU just copied: confirmed (with an order ref),
		// released, expired and revived, expired. Then new reservations and more.
		first = sku
		held = slices.DeleteFunc(held, func(r revguard.Reservation) bool { return r.SKU != sku })
		confirm := func(r revguard.Reservation, ref string, revive bool) error {
			_, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: r.CustomerID, OrderRef: ref, Revive: revive})
			return err
		}
		if err := confirm(held[0], "mid-"+held[0].ID, false); err != nil {
			t.Fatal(err)
		}
		if _, err := inv.Release(ctx, held[1].ID, ""); err != nil {
			t.Fatal(err)
		}
		clock.Advance(6 * time.Second) // past the 5-second holds
		if err := confirm(held[3], "", false); revguard.ErrorCode(err) != revguard.CodeHoldExpired {
			t.Fatalf("confirm of an expired hold: %v, want hold_expired", err)
		}
		if err := confirm(held[2], "revived", true); err != nil {
			t.Fatal(err)
		}
		workload(t, inv, clock, "b", 40)
	}
	s0 := inv.Journal.Durable()
	if _, _, err := inv.writeSnapshot(filepath.Join(inv.Dir, snapName(s0)), s0); err != nil {
		t.Fatal(err)
	}
	if copied != 4 {
		t.Fatalf("%d SKUs encoded in parts, want all 4", copied)
	}
	inv.skus.Range(func(_, v any) bool {
		if s := v.(*sku); s.book.preImages != nil {
			t.Fatalf("SKU %s still keeps states for a snapshot that ended", s.id)
		}
		return true
	})
	// The holds of the first SKU, changed after it was copied, are in the file as
	// they were: held, no order ref (a confirm must not edit what the copy shares
	// with the live state). The other SKUs were copied after the changes.
	if len(held) != 4 {
		t.Fatalf("%d holds of %s, want 4", len(held), first)
	}
	data, err := os.ReadFile(filepath.Join(inv.Dir, snapName(s0)))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := decodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	inSnap := map[string]*reservation{}
	for _, s := range snap.skus {
		for _, r := range s.book.all {
			inSnap[r.id.String()] = r
		}
	}
	for _, h := range held {
		r := inSnap[h.ID]
		if r == nil || r.state != stHeld || r.orderRef() != "" {
			t.Fatalf("hold %s of %s in the snapshot: %+v; want it held, without order ref", h.ID, first, r)
		}
	}
	workload(t, inv, clock, "c", 20)
	recoversFrom(t, dir, clock, inv, s0, "snapshot encoded while the SKUs changed")
}

// TestSnapshotsInPartsUnderLoad takes snapshots in parts of 2 reservations from the
// snapshotter while four goroutines change the SKUs, then recovers after a crash from
// the newest of them. It is the race detector's test of the parts against concurrent
// changes (which changes fall between parts is up to the scheduler, so it is no proof
// that their states are kept: TestSnapshotWhileChanging places them), and recovery's
// of the result.
func TestSnapshotsInPartsUnderLoad(t *testing.T) {
	defer func(n int) { snapChunk = n }(snapChunk)
	snapChunk = 2
	dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
	often := func(_ *journal.Journal, inv *Inventory) { inv.SnapshotEvery = 50 }
	inv := mustEngine(t, dir, clock, often)
	for round := range 4 {
		workload(t, inv, clock, fmt.Sprintf("r%d", round), 60)
	}
	want := dump(inv)
	crash(inv) // the snapshotter has stopped: its last snapshot is the newest
	newest := inv.lastSnap
	if newest == 0 {
		t.Fatal("no snapshot was taken during the workload")
	}
	inv = mustEngine(t, dir, clock, often)
	defer crash(inv)
	if inv.lastSnap != newest {
		t.Fatalf("loaded snapshot %d, want the newest, %d", inv.lastSnap, newest)
	}
	sameState(t, "snapshots in parts under load", dump(inv), want)
}
