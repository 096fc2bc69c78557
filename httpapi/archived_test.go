package httpapi_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/redis"
)

// forgetful is an Inventory that has forgotten some reservations, as the distributed
// inventory does once they have been final for its retention (the ledger keeps them):
// a purge injected into the embedded engine, which never purges.
type forgetful struct {
	revguard.Inventory
	mu   sync.Mutex
	gone map[string]bool
}

func (f *forgetful) forget(ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.gone[id] = true
	}
}

func (f *forgetful) forgot(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[id] {
		return revguard.Errorf(revguard.CodeReservationNotFound, "purged")
	}
	return nil
}

func (f *forgetful) FindReservation(ctx context.Context, id string) (revguard.Reservation, error) {
	if err := f.forgot(id); err != nil {
		return revguard.Reservation{}, err
	}
	return f.Inventory.FindReservation(ctx, id)
}

func (f *forgetful) Confirm(ctx context.Context, r revguard.ConfirmRequest) (revguard.Reservation, error) {
	if err := f.forgot(r.ID); err != nil {
		return revguard.Reservation{}, err
	}
	return f.Inventory.Confirm(ctx, r)
}

func (f *forgetful) Release(ctx context.Context, id, customerID string) (revguard.Reservation, error) {
	if err := f.forgot(id); err != nil {
		return revguard.Reservation{}, err
	}
	return f.Inventory.Release(ctx, id, customerID)
}

// TestArchivedReservations: a final reservation that the inventory no longer holds is
// answered from the ledger (SQLite's, PostgreSQL's) exactly as the engine answered it
// before, with the same ownership rules, and nothing changes. On the distributed
// backend the inventory purges them for real: the clock passes the retention and the
// sweep runs; on the embedded one the purge is injected.
func TestArchivedReservations(t *testing.T) { eachBackend(t, testArchivedReservations) }

func testArchivedReservations(t *testing.T, b backend) {
	f := &forgetful{gone: map[string]bool{}}
	o := envOptions{backend: b, clock: true}
	if b == embedded {
		o.edit = func(s *httpapi.Server) { f.Inventory = s.Inventory; s.Inventory = f }
	}
	e := mustOpenEnv(t, o)
	e.putSKU("old", `{"stock":10,"per_customer_limit":5,"hold_seconds":60}`)
	alice := e.session("alice")
	confirmed := e.mustReserve(alice, "old", ``, nil)
	released := e.mustReserve(alice, "old", ``, nil)
	expired := e.mustReserve(alice, "old", ``, nil)
	e.confirm(alice, confirmed.ID, `{"order_ref":"o-1"}`).json(t, 200, &confirmed)
	e.release(alice, released.ID, ``).json(t, 200, &released)
	e.clock.Advance(61 * time.Second)
	e.getReservation(alice, expired.ID).json(t, 200, &expired)
	if confirmed.Status != "confirmed" || released.Status != "released" || expired.Status != "expired" {
		t.Fatalf("before the purge: %+v %+v %+v", confirmed, released, expired)
	}
	e.waitLedger()

	// The purge.
	ids := []string{confirmed.ID, released.ID, expired.ID}
	if inv, ok := e.inv.(*redis.Inventory); ok {
		e.clock.Advance(redis.DefaultRetention + time.Hour)
		if err := inv.Sweep(t.Context()); err != nil {
			t.Fatal(err)
		}
	} else {
		f.forget(ids...)
	}
	for _, id := range ids {
		if _, err := e.api.Inventory.FindReservation(t.Context(), id); revguard.ErrorCode(err) != revguard.CodeReservationNotFound {
			t.Fatalf("the inventory still has %s after the purge: %v", id, err)
		}
	}
	before := e.checkInvariant("old")
	// Sessions issued after the clock jumped, which ended the old ones.
	alice, bob := e.session("alice"), e.session("bob")

	t.Run("Get", func(t *testing.T) {
		e := e.with(t)
		for _, want := range []reservation{confirmed, released, expired} {
			var got reservation
			e.getReservation(alice, want.ID).json(t, 200, &got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GET from the ledger %+v, want %+v", got, want)
			}
			e.getReservation(e.admin, want.ID).json(t, 200, &got)
			e.getReservation(bob, want.ID).wantProblem(t, 404, revguard.CodeReservationNotFound)
		}
	})
	t.Run("Confirm", func(t *testing.T) {
		e := e.with(t)
		var got reservation
		e.confirm(alice, confirmed.ID, `{"order_ref":"other"}`).json(t, 200, &got)
		if !reflect.DeepEqual(got, confirmed) {
			t.Errorf("confirm again %+v, want %+v", got, confirmed)
		}
		e.confirm(bob, confirmed.ID, ``).wantProblem(t, 404, revguard.CodeReservationNotFound)
		e.confirm(alice, released.ID, `{"revive":true}`).wantProblem(t, 409, revguard.CodeHoldReleased)
		e.confirm(alice, expired.ID, ``).wantProblem(t, 409, revguard.CodeHoldExpired)
		// Too old to revive: the engine no longer has it (docs/api.md); a revive that
		// cannot take the units is sold_out, the shop's signal to refund.
		p := e.confirm(alice, expired.ID, `{"revive":true}`).wantProblem(t, 409, revguard.CodeSoldOut)
		if !strings.Contains(p.Detail, "too old to revive") {
			t.Errorf("revive of a purged hold: detail %q", p.Detail)
		}
	})
	t.Run("Release", func(t *testing.T) {
		e := e.with(t)
		var got reservation
		e.release(alice, released.ID, ``).json(t, 200, &got)
		if !reflect.DeepEqual(got, released) {
			t.Errorf("release again %+v, want %+v", got, released)
		}
		e.release(e.admin, released.ID, ``).json(t, 200, &got)
		e.release(bob, released.ID, ``).wantProblem(t, 404, revguard.CodeReservationNotFound)
		e.release(alice, confirmed.ID, ``).wantProblem(t, 409, revguard.CodeAlreadyConfirmed)
		e.release(e.admin, confirmed.ID, ``).wantProblem(t, 409, revguard.CodeAlreadyConfirmed)
		e.release(alice, expired.ID, ``).wantProblem(t, 409, revguard.CodeHoldExpired)
	})
	t.Run("ErrReservationNotFound", func(t *testing.T) {
		e := e.with(t)
		for _, id := range []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV", "0000000000000000000000AA"} {
			e.getReservation(alice, id).wantProblem(t, 404, revguard.CodeReservationNotFound)
			e.confirm(alice, id, ``).wantProblem(t, 404, revguard.CodeReservationNotFound)
			e.release(e.admin, id, ``).wantProblem(t, 404, revguard.CodeReservationNotFound)
		}
	})
	if after := e.checkInvariant("old"); after != before {
		t.Fatalf("answers from the ledger changed the SKU: %+v, then %+v", before, after)
	}
	e.waitLedger()
	var page orderPage
	e.do(req{Method: "GET", Path: "/v1/orders?sku=old", Token: e.admin}).json(t, 200, &page)
	want := []reservation{confirmed, released, expired}
	sortByID := func(rs []reservation) {
		slices.SortFunc(rs, func(a, b reservation) int { return strings.Compare(a.ID, b.ID) })
	}
	sortByID(want)
	if !reflect.DeepEqual(page.Items, want) {
		t.Fatalf("the ledger after the fallback answers: %+v, want %+v", page.Items, want)
	}
}
