package inproc

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/revguardtest"
)

// TestClockStepsBack: when the clock steps back, every change of a SKU is still timed
// at or after the SKU's last change: reserve (created_at, and expires_at a hold after
// it), confirm, release, expiry and put; and the journal records the same times.
func TestClockStepsBack(t *testing.T) {
	dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
	inv := mustEngine(t, dir, clock, nil)
	defer crash(inv)
	ctx := t.Context()
	if _, _, err := inv.PutSKU(ctx, "k", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 5, HoldSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	t0 := clock.Now()
	a, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "k", CustomerID: "c", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(-time.Hour)
	b, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "k", CustomerID: "c", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !b.CreatedAt.Equal(t0) || !b.ExpiresAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("reserve after the clock stepped back: created %v, expires %v; want %v and 10 s later", b.CreatedAt, b.ExpiresAt, t0)
	}
	rel, err := inv.Release(ctx, a.ID, "")
	if err != nil || !rel.ReleasedAt.Equal(t0) {
		t.Fatalf("Release = %v, %v; want released at %v", rel.ReleasedAt, err, t0)
	}
	conf, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: b.ID, CustomerID: "c"})
	if err != nil || !conf.ConfirmedAt.Equal(t0) {
		t.Fatalf("Confirm = %v, %v; want confirmed at %v", conf.ConfirmedAt, err, t0)
	}

	// An expiry at t1, then the clock back again: the next change is timed t1.
	c, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "k", CustomerID: "d", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(c.ExpiresAt.Add(time.Second))
	t1 := clock.Now()
	if got, err := inv.FindReservation(ctx, c.ID); err != nil || got.Status != revguard.StatusExpired {
		t.Fatalf("FindReservation after the deadline = %s, %v; want expired", got.Status, err)
	}
	clock.Set(t0)
	if _, _, err := inv.PutSKU(ctx, "k", revguard.SKUUpdate{Stock: 6, PerCustomerLimit: 5, HoldSeconds: 10}); err != nil {
		t.Fatal(err)
	}

	var times []time.Time
	var types []revguard.EventType
	if err := inv.Journal.Replay(0, func(ev *revguard.Event) error {
		times, types = append(times, ev.Time), append(types, ev.Type)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []time.Time{t0, t0, t0, t0, t0, t0, t1, t1} // put, reserve ×2, release, confirm, reserve, expire, put
	if len(times) != len(want) {
		t.Fatalf("journal has %d events %v, want %d", len(times), types, len(want))
	}
	for i := range want {
		if !times[i].Equal(want[i]) {
			t.Errorf("event %d (%s) at %v, want %v", i+1, types[i], times[i], want[i])
		}
	}
}

// TestRecoverKeepsLastChangeTime: the time of a SKU's last change, below which no
// change is timed, is rebuilt by recovery from the journal alone, from a snapshot and
// the journal, and from a version 1 snapshot (from the reservations' times).
func TestRecoverKeepsLastChangeTime(t *testing.T) {
	setup := func(t *testing.T) (string, *revguardtest.Clock, time.Time) {
		dir, clock := t.TempDir(), revguardtest.NewClock(time.Time{})
		inv := mustEngine(t, dir, clock, nil)
		ctx := t.Context()
		if _, _, err := inv.PutSKU(ctx, "k", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 5, HoldSeconds: 600}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
		r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "k", CustomerID: "c", Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
		if _, err := inv.Release(ctx, r.ID, "c"); err != nil {
			t.Fatal(err)
		}
		// The last change is a put, whose time no reservation records.
		clock.Advance(time.Minute)
		last := clock.Now()
		if _, _, err := inv.PutSKU(ctx, "k", revguard.SKUUpdate{Stock: 6, PerCustomerLimit: 5, HoldSeconds: 600}); err != nil {
			t.Fatal(err)
		}
		crash(inv)
		return dir, clock, last
	}
	// reserveAfterStepBack reopens dir with the clock an hour before last, and checks
	// that a reservation is timed at last.
	reserveAfterStepBack := func(t *testing.T, dir string, clock *revguardtest.Clock, last time.Time) *Inventory {
		clock.Set(last.Add(-time.Hour))
		inv := mustEngine(t, dir, clock, nil)
		t.Cleanup(func() { crash(inv) })
		r, _, err := inv.Reserve(t.Context(), revguard.ReserveRequest{SKU: "k", CustomerID: "d", Quantity: 1})
		if err != nil || !r.CreatedAt.Equal(last) {
			t.Fatalf("reserve after recovery with the clock an hour back: created %v, %v; want %v", r.CreatedAt, err, last)
		}
		return inv
	}

	t.Run("Journal", func(t *testing.T) {
		dir, clock, last := setup(t)
		reserveAfterStepBack(t, dir, clock, last)
	})
	t.Run("Snapshot", func(t *testing.T) {
		dir, clock, last := setup(t)
		inv := mustEngine(t, dir, clock, nil)
		if err := inv.Close(); err != nil { // a snapshot of everything
			t.Fatal(err)
		}
		inv.Journal.Close()
		inv = reserveAfterStepBack(t, dir, clock, last)
		if inv.lastSnap == 0 {
			t.Fatal("recovered without the snapshot")
		}
	})
	t.Run("SnapshotVersion1", func(t *testing.T) {
		// One SKU, last seq 3: a hold released at 2,000 ns and one expired with a
		// deadline at 5,000 ns, the latest time the reservations record.
		body := binary.AppendUvarint([]byte(snapMagicV1), 3)
		body = append(body, 'S')
		body = appendStr(body, "k")
		for _, v := range []int64{5, 5, 10, 0} { // stock, limit, hold seconds, opens_at
			body = binary.AppendVarint(body, v)
		}
		body = binary.AppendUvarint(body, 3) // last seq; no time in version 1
		body = binary.AppendVarint(body, 0)  // held
		body = binary.AppendVarint(body, 0)  // sold
		body = binary.AppendUvarint(body, 2)
		for i, r := range []struct {
			state                  resState
			created, expires, done int64
		}{{stReleased, 1000, 4000, 2000}, {stExpired, 1500, 5000, 0}} {
			id := newID(int64(i + 1))
			body = append(body, id[:]...)
			body = appendStr(body, "c")
			body = binary.AppendUvarint(body, 1)
			body = append(body, byte(r.state))
			body = binary.AppendVarint(body, r.created)
			body = binary.AppendVarint(body, r.expires)
			body = binary.AppendVarint(body, r.done)
			body = appendStr(body, "")
			body = appendStr(body, "")
		}
		body = append(body, 'E', 1, 2)
		st, err := decodeSnapshot(withCRC(body))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.skus[0].lastAt; got != 5000 {
			t.Fatalf("last change time from a version 1 snapshot = %d, want 5000", got)
		}
		// Written again, the time is kept as such.
		again := binary.AppendUvarint([]byte(snapMagic), 3)
		again = appendSKURecord(again, st.skus[0])
		again = append(again, 'E', 1, 2)
		st, err = decodeSnapshot(withCRC(again))
		if err != nil || st.skus[0].lastAt != 5000 {
			t.Fatalf("version 2 round trip: %v, last change time %d; want 5000", err, st.skus[0].lastAt)
		}
	})
}
