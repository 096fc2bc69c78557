package revguardtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// OpenRoomFunc returns a new, empty inventory and a waiting room over it, both reading
// their time from clock, closed by a tb.Cleanup. The room must not advance on its own
// timer: the suite calls Advance.
type OpenRoomFunc func(tb testing.TB, clock *Clock) (revguard.Inventory, revguard.WaitingRoom)

// TestWaitingRoom runs the conformance suite of revguard.WaitingRoom: the pre-queue and
// its draw, first come first served after it, one place per customer, admission at the
// pace and within the stock, closing when sold out and reopening, and the admission
// that a reservation needs, single-use and bound to its customer.
func TestWaitingRoom(t *testing.T, open OpenRoomFunc) {
	run := func(name string, test func(f *roomFixture)) {
		t.Run(name, func(t *testing.T) {
			clock := NewClock(time.Time{})
			inv, room := open(t, clock)
			test(&roomFixture{invFixture: invFixture{t: t, inv: inv, clock: clock, ctx: t.Context()}, room: room})
		})
	}
	run("PutRoom/OK", testRoomPut)
	run("PutRoom/ErrSKUNotFound", testRoomPutSKUNotFound)
	run("PutRoom/ErrInvalidRequest", testRoomPutInvalid)
	run("DeleteRoom/OK", testRoomDelete)
	run("Join/ErrWaitingRoomNotFound", testJoinNoRoom)
	run("Join/ErrSaleNotOpen", testJoinTooEarly)
	run("Join/OK_SamePlace", testJoinSamePlace)
	run("Join/OK_Concurrent", testJoinConcurrent)
	run("FindPlace/ErrPlaceNotFound", testFindPlaceNotFound)
	run("PreQueue/OK_NoPosition", testPreQueueNoPosition)
	run("Draw/OK_ShuffledAndReproducible", testDrawShuffled)
	run("Draw/OK_Once", testDrawOnce)
	run("Draw/OK_FirstComeAfter", testDrawFIFOAfter)
	run("Draw/OK_ConcurrentJoinsAndPolls", testDrawConcurrent)
	run("Admission/OK_Paced", testAdmissionPaced)
	run("Admission/OK_WithinStock", testAdmissionWithinStock)
	run("Admission/OK_Lapses", testAdmissionLapses)
	run("SoldOut/OK_ClosesAndReopensOnRestock", testSoldOutCloses)
	run("SoldOut/ErrJoinAtOnce", testSoldOutJoinAtOnce)
	run("Reopen/OK_OnRelease", testReopenOnRelease)
	run("Claim/OK_NoRoom", testClaimNoRoom)
	run("Claim/ErrAdmissionRequired", testClaimNotAdmitted)
	run("Claim/ErrAdmissionRequired_SingleUse", testClaimSingleUse)
	run("Claim/OK_RefusedReservationKeepsAdmission", testClaimSettleUnused)
	run("Claim/ErrAdmissionRequired_Concurrent", testClaimConcurrent)
}

// roomFixture is one subtest's inventory, room and clock.
type roomFixture struct {
	invFixture
	room revguard.WaitingRoom
}

// opensIn puts a SKU whose sale opens d from now, with a room of the given pace and a
// pre-queue of an hour.
func (f *roomFixture) opensIn(sku string, stock int64, d time.Duration, perSecond int64) {
	f.t.Helper()
	_, _, err := f.inv.PutSKU(f.ctx, sku, revguard.SKUUpdate{Stock: stock, PerCustomerLimit: 1,
		HoldSeconds: 600, OpensAt: f.clock.Now().Add(d)})
	if err != nil {
		f.t.Fatalf("PutSKU(%s): %v", sku, err)
	}
	if _, _, err := f.room.PutRoom(f.ctx, sku, revguard.RoomSettings{PreQueueSeconds: 3600, AdmitPerSecond: perSecond}); err != nil {
		f.t.Fatalf("PutRoom(%s): %v", sku, err)
	}
}

func (f *roomFixture) join(sku, customer string) revguard.Place {
	f.t.Helper()
	p, _, err := f.room.Join(f.ctx, sku, customer)
	if err != nil {
		f.t.Fatalf("Join(%s, %s): %v", sku, customer, err)
	}
	if p.SKU != sku || p.CustomerID != customer {
		f.t.Fatalf("Join(%s, %s) = place of %s in %s", sku, customer, p.CustomerID, p.SKU)
	}
	return p
}

func (f *roomFixture) place(sku, customer string) revguard.Place {
	f.t.Helper()
	p, err := f.room.FindPlace(f.ctx, sku, customer)
	if err != nil {
		f.t.Fatalf("FindPlace(%s, %s): %v", sku, customer, err)
	}
	return p
}

func (f *roomFixture) advance(sku string) {
	f.t.Helper()
	if err := f.room.Advance(f.ctx, sku); err != nil {
		f.t.Fatalf("Advance(%s): %v", sku, err)
	}
}

func (f *roomFixture) findRoom(sku string) revguard.Room {
	f.t.Helper()
	r, err := f.room.FindRoom(f.ctx, sku)
	if err != nil {
		f.t.Fatalf("FindRoom(%s): %v", sku, err)
	}
	return r
}

// status fails unless the customer's place has status want.
func (f *roomFixture) status(sku, customer string, want revguard.PlaceStatus) revguard.Place {
	f.t.Helper()
	p := f.place(sku, customer)
	if p.Status != want {
		f.t.Fatalf("place of %s: status %s (position %d), want %s", customer, p.Status, p.Position, want)
	}
	return p
}

// admittedOf returns the customers among cs whose place is admitted.
func (f *roomFixture) admittedOf(sku string, cs []string) []string {
	f.t.Helper()
	var out []string
	for _, c := range cs {
		if f.place(sku, c).Status == revguard.PlaceAdmitted {
			out = append(out, c)
		}
	}
	return out
}

// buy reserves one unit through the room (claim, reserve, settle), which must succeed.
func (f *roomFixture) buy(sku, customer string) revguard.Reservation {
	f.t.Helper()
	ok, err := f.room.Claim(f.ctx, sku, customer)
	if err != nil || !ok {
		f.t.Fatalf("Claim(%s, %s) = %v, %v; want a claim", sku, customer, ok, err)
	}
	res := f.reserve(sku, customer, 1)
	if err := f.room.Settle(f.ctx, sku, customer, true); err != nil {
		f.t.Fatalf("Settle(%s, %s, used): %v", sku, customer, err)
	}
	return res
}

// names returns n customer ids with the prefix.
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}
