package revguardtest

import (
	"fmt"
	"sync"
	"time"

	"github.com/revenueguard/revguard"
)

func testReserveOK(f *invFixture) {
	f.put("sku-1", 10, 3, 90)
	now := f.clock.Now()
	r := f.reserve("sku-1", "c1", 2)
	want := revguard.Reservation{ID: r.ID, SKU: "sku-1", CustomerID: "c1", Quantity: 2, Status: revguard.StatusHeld,
		CreatedAt: now, ExpiresAt: now.Add(90 * time.Second)}
	if r.ID == "" {
		f.t.Fatal("reservation without id")
	}
	f.sameReservation("Reserve", r, want)
	f.sameReservation("FindReservation", f.find(r.ID), want)
	f.counts("sku-1", 10, 8, 2, 0)
}

func testReserveSKUNotFound(f *invFixture) {
	_, _, err := f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: "nope", CustomerID: "c1", Quantity: 1})
	f.wantCode("Reserve(nope)", err, revguard.CodeSKUNotFound)
}

func testReserveSaleNotOpen(f *invFixture) {
	const until = time.Hour + 250*time.Millisecond // a fraction of a second, named in the refusal
	opens := f.clock.Now().Add(until)
	if _, _, err := f.inv.PutSKU(f.ctx, "sku-1", revguard.SKUUpdate{Stock: 3, PerCustomerLimit: 1, HoldSeconds: 60, OpensAt: opens}); err != nil {
		f.t.Fatal(err)
	}
	req := revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 1}
	_, _, err := f.inv.Reserve(f.ctx, req)
	f.wantCode("Reserve before opens_at", err, revguard.CodeSaleNotOpen)
	f.wantTimeInDetail("Reserve before opens_at", err, opens)
	f.clock.Advance(until - time.Nanosecond)
	_, _, err = f.inv.Reserve(f.ctx, req)
	f.wantCode("Reserve 1ns before opens_at", err, revguard.CodeSaleNotOpen)
	f.counts("sku-1", 3, 3, 0, 0)
	f.clock.Advance(time.Nanosecond)
	f.reserve("sku-1", "c1", 1)
	f.counts("sku-1", 3, 2, 1, 0)
}

func testReserveSoldOut(f *invFixture) {
	f.put("sku-1", 1, 1, 60)
	f.reserve("sku-1", "c1", 1)
	for range 3 { // the repeated refusal may take a faster path: same answer
		_, _, err := f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c2", Quantity: 1})
		f.wantCode("Reserve of a sold-out SKU", err, revguard.CodeSoldOut)
	}
	f.counts("sku-1", 1, 0, 1, 0)
}

func testReserveQuantityAboveAvailable(f *invFixture) {
	f.put("sku-1", 3, 2, 60)
	f.reserve("sku-1", "c1", 2)
	_, _, err := f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c2", Quantity: 2})
	f.wantCode("Reserve 2 of 1 available", err, revguard.CodeSoldOut)
	f.counts("sku-1", 3, 1, 2, 0)
	f.reserve("sku-1", "c2", 1)
}

func testReserveLimit(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	a := f.reserve("sku-1", "c1", 1)
	b := f.reserve("sku-1", "c1", 1)
	req := revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 1}
	_, _, err := f.inv.Reserve(f.ctx, req)
	f.wantCode("third unit over a limit of 2", err, revguard.CodeLimitExceeded)
	f.confirm(a, "")
	_, _, err = f.inv.Reserve(f.ctx, req)
	f.wantCode("confirmed units count against the limit", err, revguard.CodeLimitExceeded)
	f.counts("sku-1", 10, 8, 1, 1)
	f.release(b)
	f.reserve("sku-1", "c1", 1) // released units no longer count
	f.reserve("sku-1", "c2", 2) // the limit is per customer
	f.counts("sku-1", 10, 6, 3, 1)
}

func testReserveQuantityAboveLimit(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	_, _, err := f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 3})
	f.wantCode("quantity 3 over a limit of 2", err, revguard.CodeLimitExceeded)
	f.counts("sku-1", 10, 10, 0, 0)
}

func testReserveIDs(f *invFixture) {
	f.put("sku-1", 100, 100, 600)
	f.put("sku-2", 100, 100, 600)
	seen := make(map[string]bool)
	prev := ""
	for i := range 20 {
		f.clock.Advance(time.Millisecond)
		r := f.reserve(fmt.Sprintf("sku-%d", 1+i%2), "c1", 1)
		if seen[r.ID] {
			f.t.Fatalf("id %s given twice", r.ID)
		}
		seen[r.ID] = true
		if r.ID <= prev {
			f.t.Fatalf("id %s created after %s sorts before it", r.ID, prev)
		}
		prev = r.ID
	}
}

func testIdempotentReplay(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	req := revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 2, IdempotencyKey: "key-1"}
	first, replayed, err := f.inv.Reserve(f.ctx, req)
	if err != nil || replayed {
		f.t.Fatalf("first Reserve = replayed %v, %v", replayed, err)
	}
	f.clock.Advance(time.Second)
	again, replayed, err := f.inv.Reserve(f.ctx, req)
	if err != nil || !replayed {
		f.t.Fatalf("second Reserve = replayed %v, %v; want a replay", replayed, err)
	}
	f.sameReservation("replay", again, first)
	f.counts("sku-1", 10, 8, 2, 0)

	found, ok, err := f.inv.FindIdempotent(f.ctx, req)
	if err != nil || !ok {
		f.t.Fatalf("FindIdempotent = found %v, %v", ok, err)
	}
	f.sameReservation("FindIdempotent", found, first)

	// A replay returns the reservation as it was created, even once confirmed.
	f.confirm(first, "")
	again, replayed, err = f.inv.Reserve(f.ctx, req)
	if err != nil || !replayed {
		f.t.Fatalf("Reserve after confirm = replayed %v, %v", replayed, err)
	}
	f.sameReservation("replay after confirm", again, first)
	f.counts("sku-1", 10, 8, 0, 2)

	// Keys are scoped to the customer.
	other, replayed, err := f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c2", Quantity: 2, IdempotencyKey: "key-1"})
	if err != nil || replayed || other.ID == first.ID {
		f.t.Fatalf("same key, other customer = %s replayed %v, %v; want a new reservation", other.ID, replayed, err)
	}
	f.counts("sku-1", 10, 6, 2, 2)
}

func testIdempotencyKeyReused(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	f.put("sku-2", 10, 2, 60)
	req := revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 1, IdempotencyKey: "key-1"}
	if _, _, err := f.inv.Reserve(f.ctx, req); err != nil {
		f.t.Fatal(err)
	}
	for _, bad := range []revguard.ReserveRequest{
		{SKU: "sku-1", CustomerID: "c1", Quantity: 2, IdempotencyKey: "key-1"},
		{SKU: "sku-2", CustomerID: "c1", Quantity: 1, IdempotencyKey: "key-1"},
	} {
		_, _, err := f.inv.Reserve(f.ctx, bad)
		f.wantCode(fmt.Sprintf("Reserve(%+v)", bad), err, revguard.CodeIdempotencyKeyReused)
		_, _, err = f.inv.FindIdempotent(f.ctx, bad)
		f.wantCode(fmt.Sprintf("FindIdempotent(%+v)", bad), err, revguard.CodeIdempotencyKeyReused)
	}
	f.counts("sku-1", 10, 9, 1, 0)
	f.counts("sku-2", 10, 10, 0, 0)
}

func testIdempotencyFailureForgotten(f *invFixture) {
	f.put("sku-1", 0, 1, 60)
	req := revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 1, IdempotencyKey: "key-1"}
	_, _, err := f.inv.Reserve(f.ctx, req)
	f.wantCode("Reserve of stock 0", err, revguard.CodeSoldOut)
	if _, found, err := f.inv.FindIdempotent(f.ctx, req); err != nil || found {
		f.t.Fatalf("FindIdempotent after a failed reserve = found %v, %v; want not found", found, err)
	}
	f.put("sku-1", 1, 1, 60)
	r, replayed, err := f.inv.Reserve(f.ctx, req)
	if err != nil || replayed || r.Status != revguard.StatusHeld {
		f.t.Fatalf("Reserve after restock = %+v replayed %v, %v; want a new hold", r, replayed, err)
	}
	f.counts("sku-1", 1, 0, 1, 0)
}

func testIdempotencyConcurrent(f *invFixture) {
	const (
		rounds = 10 // each with its own customer and key
		n      = 32 // concurrent calls per round
	)
	f.put("sku-1", 1000, 2, 60)
	for round := range rounds {
		req := revguard.ReserveRequest{SKU: "sku-1", CustomerID: fmt.Sprintf("c%d", round), Quantity: 2, IdempotencyKey: "key-1"}
		var wg sync.WaitGroup
		start := make(chan struct{})
		ids := make([]string, n)
		fresh := make([]bool, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				var r revguard.Reservation
				var replayed bool
				if i%2 == 0 {
					r, replayed, errs[i] = f.inv.Reserve(f.ctx, req)
				} else { // the gateway's look-up before the bot check, then the reserve
					if r, replayed, errs[i] = f.inv.FindIdempotent(f.ctx, req); errs[i] == nil && !replayed {
						r, replayed, errs[i] = f.inv.Reserve(f.ctx, req)
					}
				}
				ids[i], fresh[i] = r.ID, !replayed
			})
		}
		close(start)
		wg.Wait()
		created := 0
		for i := range n {
			if errs[i] != nil || ids[i] == "" || ids[i] != ids[0] {
				f.t.Fatalf("round %d, call %d: id %q, %v; want every call to return id %q", round, i, ids[i], errs[i], ids[0])
			}
			if fresh[i] {
				created++
			}
		}
		if created != 1 {
			f.t.Fatalf("round %d: %d calls reported a new reservation, want exactly 1", round, created)
		}
	}
	f.counts("sku-1", 1000, 1000-2*rounds, 2*rounds, 0)
}

func testConfirmOK(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	f.clock.Advance(10 * time.Second)
	want := r
	want.Status, want.ConfirmedAt, want.OrderRef = revguard.StatusConfirmed, f.clock.Now(), "order-1"
	f.sameReservation("Confirm", f.confirm(r, "order-1"), want)
	f.sameReservation("FindReservation", f.find(r.ID), want)
	f.counts("sku-1", 10, 8, 0, 2)
}

func testConfirmAgain(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 1)
	first := f.confirm(r, "order-1")
	f.clock.Advance(time.Second)
	again := f.confirm(r, "order-2")
	f.sameReservation("second Confirm", again, first) // the first order ref stays
	again, err := f.inv.Confirm(f.ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "c1", Revive: true})
	if err != nil {
		f.t.Fatal(err)
	}
	f.sameReservation("Confirm with revive of a confirmed one", again, first)
	f.counts("sku-1", 10, 9, 0, 1)
}

func testConfirmNotFound(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 1)
	for _, req := range []revguard.ConfirmRequest{
		{ID: otherID(r.ID), CustomerID: "c1"},
		{ID: "not-an-id", CustomerID: "c1"},
		{ID: r.ID, CustomerID: "c2"}, // another customer's: existence is not revealed
		{ID: r.ID, CustomerID: ""},
	} {
		_, err := f.inv.Confirm(f.ctx, req)
		f.wantCode(fmt.Sprintf("Confirm(%+v)", req), err, revguard.CodeReservationNotFound)
	}
	f.sameReservation("after refused confirms", f.find(r.ID), r)
	f.counts("sku-1", 10, 9, 1, 0)
}

func testConfirmReleased(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 1)
	f.release(r)
	for _, revive := range []bool{false, true} { // a released hold is never revived
		_, err := f.inv.Confirm(f.ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "c1", Revive: revive})
		f.wantCode(fmt.Sprintf("Confirm(released, revive %v)", revive), err, revguard.CodeHoldReleased)
	}
	f.counts("sku-1", 10, 10, 0, 0)
}

func testConfirmExpired(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	f.clock.Advance(500 * time.Millisecond) // a deadline with a fraction of a second
	r := f.reserve("sku-1", "c1", 2)
	f.clock.Advance(61 * time.Second)
	_, err := f.inv.Confirm(f.ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "c1"})
	f.wantCode("Confirm after the deadline", err, revguard.CodeHoldExpired)
	f.wantTimeInDetail("Confirm after the deadline", err, r.ExpiresAt)
	if got := f.find(r.ID); got.Status != revguard.StatusExpired {
		f.t.Fatalf("status %s after the deadline, want expired", got.Status)
	}
	f.counts("sku-1", 10, 10, 0, 0)
}

func testConfirmRevive(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	f.clock.Advance(2 * time.Minute)
	f.counts("sku-1", 10, 10, 0, 0)
	c, err := f.inv.Confirm(f.ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "c1", OrderRef: "late", Revive: true})
	if err != nil {
		f.t.Fatalf("Confirm with revive: %v", err)
	}
	want := r
	want.Status, want.ConfirmedAt, want.OrderRef = revguard.StatusConfirmed, f.clock.Now(), "late"
	f.sameReservation("revived", c, want)
	f.counts("sku-1", 10, 8, 0, 2)
	// The revived units count against the limit.
	_, _, err = f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 1})
	f.wantCode("Reserve after a revive up to the limit", err, revguard.CodeLimitExceeded)
}

func testReviveSoldOut(f *invFixture) {
	f.put("sku-1", 1, 1, 60)
	r := f.reserve("sku-1", "c1", 1)
	f.clock.Advance(time.Minute)
	f.reserve("sku-1", "c2", 1)
	_, err := f.inv.Confirm(f.ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "c1", Revive: true})
	f.wantCode("revive without units", err, revguard.CodeSoldOut)
	// Every backend says why, the same way: the refusal is about this hold.
	if d := revguard.ErrorDetail(err); d != "the units of the expired hold are no longer available" {
		f.t.Errorf("revive without units: detail %q", d)
	}
	if got := f.find(r.ID); got.Status != revguard.StatusExpired {
		f.t.Fatalf("status %s after a refused revive, want expired", got.Status)
	}
	f.counts("sku-1", 1, 0, 1, 0)
}

func testReviveLimit(f *invFixture) {
	f.put("sku-1", 5, 1, 60)
	r := f.reserve("sku-1", "c1", 1)
	f.clock.Advance(time.Minute)
	f.reserve("sku-1", "c1", 1)
	_, err := f.inv.Confirm(f.ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "c1", Revive: true})
	f.wantCode("revive over the limit", err, revguard.CodeLimitExceeded)
	if got := f.find(r.ID); got.Status != revguard.StatusExpired {
		f.t.Fatalf("status %s after a refused revive, want expired", got.Status)
	}
	f.counts("sku-1", 5, 4, 1, 0)
}

func testReleaseOK(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	f.clock.Advance(time.Second)
	want := r
	want.Status, want.ReleasedAt = revguard.StatusReleased, f.clock.Now()
	f.sameReservation("Release", f.release(r), want)
	f.sameReservation("FindReservation", f.find(r.ID), want)
	f.counts("sku-1", 10, 10, 0, 0)
}

func testReleaseAdmin(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	got, err := f.inv.Release(f.ctx, r.ID, "")
	if err != nil || got.Status != revguard.StatusReleased {
		f.t.Fatalf("admin Release = %s, %v", got.Status, err)
	}
	f.counts("sku-1", 10, 10, 0, 0)
}

func testReleaseAgain(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	first := f.release(r)
	f.clock.Advance(time.Second)
	f.sameReservation("second Release", f.release(r), first)
	f.counts("sku-1", 10, 10, 0, 0)
}

func testReleaseNotFound(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	for _, c := range []struct{ id, customer string }{{r.ID, "c2"}, {otherID(r.ID), "c1"}, {"bogus", ""}} {
		_, err := f.inv.Release(f.ctx, c.id, c.customer)
		f.wantCode(fmt.Sprintf("Release(%s, %s)", c.id, c.customer), err, revguard.CodeReservationNotFound)
	}
	f.counts("sku-1", 10, 8, 2, 0)
}

func testReleaseConfirmed(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	f.confirm(r, "")
	for _, customer := range []string{"c1", ""} {
		_, err := f.inv.Release(f.ctx, r.ID, customer)
		f.wantCode("Release of a confirmed one", err, revguard.CodeAlreadyConfirmed)
	}
	f.counts("sku-1", 10, 8, 0, 2)
}

func testReleaseExpired(f *invFixture) {
	f.put("sku-1", 10, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	f.clock.Advance(time.Hour)
	_, err := f.inv.Release(f.ctx, r.ID, "c1")
	f.wantCode("Release after the deadline", err, revguard.CodeHoldExpired)
	f.counts("sku-1", 10, 10, 0, 0)
}

func testExpiryReturnsUnits(f *invFixture) {
	f.put("sku-1", 10, 3, 60)
	a := f.reserve("sku-1", "c1", 3)
	f.clock.Advance(30 * time.Second)
	b := f.reserve("sku-1", "c2", 2)
	c := f.reserve("sku-1", "c3", 1)
	f.confirm(c, "")
	f.counts("sku-1", 10, 4, 5, 1)
	f.clock.Advance(31 * time.Second) // a is due, b is not
	if av, err := f.inv.Availability(f.ctx, "sku-1"); err != nil || av.Available != 7 {
		f.t.Fatalf("Availability after a's deadline = %+v, %v; want 7 available", av, err)
	}
	f.counts("sku-1", 10, 7, 2, 1)
	if f.find(a.ID).Status != revguard.StatusExpired || f.find(b.ID).Status != revguard.StatusHeld {
		f.t.Fatalf("statuses %s, %s; want expired, held", f.find(a.ID).Status, f.find(b.ID).Status)
	}
	f.clock.Advance(30 * time.Second)
	f.counts("sku-1", 10, 9, 0, 1)
	// The freed units are reservable, by the same customers too.
	f.reserve("sku-1", "c1", 3)
	f.counts("sku-1", 10, 6, 3, 1)
}

func testExpiryAtDeadline(f *invFixture) {
	f.put("sku-1", 1, 1, 60)
	r := f.reserve("sku-1", "c1", 1)
	f.clock.Advance(60*time.Second - time.Nanosecond)
	if got := f.find(r.ID); got.Status != revguard.StatusHeld {
		f.t.Fatalf("status %s 1ns before the deadline, want held", got.Status)
	}
	f.clock.Advance(time.Nanosecond)
	if got := f.find(r.ID); got.Status != revguard.StatusExpired {
		f.t.Fatalf("status %s at the deadline, want expired", got.Status)
	}
	f.counts("sku-1", 1, 1, 0, 0)
}
