package revguardtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestInventory runs the conformance suite of revguard.Inventory. open returns a new,
// empty inventory that reads its time from clock (a fresh one per subtest) and is
// closed by a tb.Cleanup.
//
// The subtests are named after the rule and the outcome (Reserve/ErrSoldOut). After
// every step they check the invariants of the SKU involved: available + held + sold
// == stock, each non-negative.
func TestInventory(t *testing.T, open func(tb testing.TB, clock *Clock) revguard.Inventory) {
	TestInventoryWith(t, open, SuiteOptions{})
}

// SuiteOptions scales the conformance suite to a backend.
type SuiteOptions struct {
	// StressGoroutines is how many goroutines each stress subtest runs; 0 means 2,000.
	// A backend whose every call crosses the network several times over (a Redis
	// Cluster with its servers on the same two cores, say) runs fewer, so that the
	// stress tests its rules under contention, not its timeouts.
	StressGoroutines int
}

// TestInventoryWith is TestInventory scaled by o.
func TestInventoryWith(t *testing.T, open func(tb testing.TB, clock *Clock) revguard.Inventory, o SuiteOptions) {
	goroutines := o.StressGoroutines
	if goroutines == 0 {
		goroutines = 2000
	}
	run := func(name string, test func(f *invFixture)) {
		t.Run(name, func(t *testing.T) {
			clock := NewClock(time.Time{})
			test(&invFixture{t: t, inv: open(t, clock), clock: clock, ctx: t.Context()})
		})
	}
	run("PutSKU/OK_Created", testPutCreated)
	run("PutSKU/OK_Updated", testPutUpdated)
	run("PutSKU/OK_Restock", testPutRestock)
	run("PutSKU/OK_KeepsHoldsAndSales", testPutKeepsHolds)
	run("PutSKU/OK_StockEqualsCommitted", testPutStockEqualsCommitted)
	run("PutSKU/ErrStockBelowCommitted", testPutStockBelowCommitted)
	run("FindSKU/ErrSKUNotFound", testFindSKUNotFound)
	run("Availability/OK", testAvailability)
	run("Availability/ErrSKUNotFound", testAvailabilityNotFound)
	run("Reserve/OK", testReserveOK)
	run("Reserve/ErrSKUNotFound", testReserveSKUNotFound)
	run("Reserve/ErrSaleNotOpen", testReserveSaleNotOpen)
	run("Reserve/ErrSoldOut", testReserveSoldOut)
	run("Reserve/ErrSoldOut_QuantityAboveAvailable", testReserveQuantityAboveAvailable)
	run("Reserve/ErrLimitExceeded", testReserveLimit)
	run("Reserve/ErrLimitExceeded_QuantityAboveLimit", testReserveQuantityAboveLimit)
	run("Reserve/OK_IdsUniqueAndSortable", testReserveIDs)
	run("Reserve/OK_IdempotentReplay", testIdempotentReplay)
	run("Reserve/ErrIdempotencyKeyReused", testIdempotencyKeyReused)
	run("Reserve/OK_IdempotencyFailureNotRemembered", testIdempotencyFailureForgotten)
	run("Reserve/OK_IdempotencyConcurrentSameKey", testIdempotencyConcurrent)
	run("FindIdempotent/OK_Unknown", testFindIdempotentUnknown)
	run("Confirm/OK", testConfirmOK)
	run("Confirm/OK_Again", testConfirmAgain)
	run("Confirm/ErrReservationNotFound", testConfirmNotFound)
	run("Confirm/ErrHoldReleased", testConfirmReleased)
	run("Confirm/ErrHoldExpired", testConfirmExpired)
	run("Confirm/OK_Revive", testConfirmRevive)
	run("Confirm/ErrSoldOut_Revive", testReviveSoldOut)
	run("Confirm/ErrLimitExceeded_Revive", testReviveLimit)
	run("Release/OK", testReleaseOK)
	run("Release/OK_Admin", testReleaseAdmin)
	run("Release/OK_Again", testReleaseAgain)
	run("Release/ErrReservationNotFound", testReleaseNotFound)
	run("Release/ErrAlreadyConfirmed", testReleaseConfirmed)
	run("Release/ErrHoldExpired", testReleaseExpired)
	run("Expiry/OK_ReturnsUnits", testExpiryReturnsUnits)
	run("Expiry/OK_AtTheDeadline", testExpiryAtDeadline)
	run("FindReservation/OK", testFindReservation)
	run("FindReservation/ErrReservationNotFound", testFindReservationNotFound)
	run("Times/OK_MonotonicWithinStock", testTimesWithinStock)
	run("Linearizable", testLinearizable)
	run("Stress/HotSKU", func(f *invFixture) {
		Stress(f.t, f.inv, StressOptions{Prefix: "hot", SKUs: 1, Goroutines: goroutines, Ops: 4,
			Stock: 1500, Limit: 3, Customers: 1000, Clock: f.clock})
	})
	run("Stress/ManySKUs", func(f *invFixture) {
		Stress(f.t, f.inv, StressOptions{Prefix: "many", SKUs: 200, Goroutines: goroutines, Ops: 4,
			Stock: 20, Limit: 2, Customers: 500, Clock: f.clock})
	})
}

// invFixture is one subtest's inventory, clock and helpers.
type invFixture struct {
	t     *testing.T
	inv   revguard.Inventory
	clock *Clock
	ctx   context.Context
}

// put creates or updates a SKU, which must succeed.
func (f *invFixture) put(id string, stock, limit, holdSeconds int64) revguard.SKU {
	f.t.Helper()
	s, _, err := f.inv.PutSKU(f.ctx, id, revguard.SKUUpdate{Stock: stock, PerCustomerLimit: limit, HoldSeconds: holdSeconds})
	if err != nil {
		f.t.Fatalf("PutSKU(%s, stock %d, limit %d, hold %d): %v", id, stock, limit, holdSeconds, err)
	}
	CheckSKU(f.t, s)
	return s
}

// reserve makes a reservation without idempotency key, which must succeed.
func (f *invFixture) reserve(skuID, customer string, qty int64) revguard.Reservation {
	f.t.Helper()
	r, replayed, err := f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: skuID, CustomerID: customer, Quantity: qty})
	if err != nil || replayed {
		f.t.Fatalf("Reserve(%s, %s, %d) = replayed %v, %v; want a new reservation", skuID, customer, qty, replayed, err)
	}
	f.check(skuID)
	return r
}

func (f *invFixture) confirm(r revguard.Reservation, orderRef string) revguard.Reservation {
	f.t.Helper()
	c, err := f.inv.Confirm(f.ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: r.CustomerID, OrderRef: orderRef})
	if err != nil || c.Status != revguard.StatusConfirmed {
		f.t.Fatalf("Confirm(%s) = %s, %v; want confirmed", r.ID, c.Status, err)
	}
	f.check(r.SKU)
	return c
}

func (f *invFixture) release(r revguard.Reservation) revguard.Reservation {
	f.t.Helper()
	c, err := f.inv.Release(f.ctx, r.ID, r.CustomerID)
	if err != nil || c.Status != revguard.StatusReleased {
		f.t.Fatalf("Release(%s) = %s, %v; want released", r.ID, c.Status, err)
	}
	f.check(r.SKU)
	return c
}

// find returns the current state of r, which must exist.
func (f *invFixture) find(id string) revguard.Reservation {
	f.t.Helper()
	r, err := f.inv.FindReservation(f.ctx, id)
	if err != nil {
		f.t.Fatalf("FindReservation(%s): %v", id, err)
	}
	return r
}

// check reads the SKU and checks its invariants.
func (f *invFixture) check(id string) revguard.SKU {
	f.t.Helper()
	s, err := f.inv.FindSKU(f.ctx, id)
	if err != nil {
		f.t.Fatalf("FindSKU(%s): %v", id, err)
	}
	CheckSKU(f.t, s)
	return s
}

// counts checks the SKU's counts.
func (f *invFixture) counts(id string, stock, available, held, sold int64) {
	f.t.Helper()
	s := f.check(id)
	if s.Stock != stock || s.Available != available || s.Held != held || s.Sold != sold {
		f.t.Fatalf("SKU %s: stock %d, available %d, held %d, sold %d; want %d, %d, %d, %d",
			id, s.Stock, s.Available, s.Held, s.Sold, stock, available, held, sold)
	}
}

// wantCode fails unless err has the code want.
func (f *invFixture) wantCode(what string, err error, want revguard.Code) {
	f.t.Helper()
	if got := revguard.ErrorCode(err); got != want {
		f.t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, want)
	}
}

// wantTimeInDetail fails unless err's detail names at to the nanosecond it holds (RFC
// 3339 with the fraction, as the API shows times), not cut to the second.
func (f *invFixture) wantTimeInDetail(what string, err error, at time.Time) {
	f.t.Helper()
	if want := at.UTC().Format(time.RFC3339Nano); !strings.Contains(err.Error(), want) {
		f.t.Errorf("%s: error %q does not name %s", what, err, want)
	}
}

// CheckSKU fails tb unless s satisfies the SKU invariants: available + held + sold ==
// stock, each non-negative.
func CheckSKU(tb testing.TB, s revguard.SKU) {
	tb.Helper()
	if s.Available < 0 || s.Held < 0 || s.Sold < 0 || s.Stock < 0 || s.Available+s.Held+s.Sold != s.Stock {
		tb.Fatalf("SKU %s breaks the invariant: available %d + held %d + sold %d, stock %d",
			s.ID, s.Available, s.Held, s.Sold, s.Stock)
	}
}

// sameReservation fails unless got equals want, times compared with Equal.
func (f *invFixture) sameReservation(what string, got, want revguard.Reservation) {
	f.t.Helper()
	if got.ID != want.ID || got.SKU != want.SKU || got.CustomerID != want.CustomerID ||
		got.Quantity != want.Quantity || got.Status != want.Status || got.OrderRef != want.OrderRef ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) ||
		!got.ConfirmedAt.Equal(want.ConfirmedAt) || !got.ReleasedAt.Equal(want.ReleasedAt) {
		f.t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testPutCreated(f *invFixture) {
	opens := f.clock.Now().Add(-time.Hour)
	got, created, err := f.inv.PutSKU(f.ctx, "sku-1", revguard.SKUUpdate{Stock: 10, PerCustomerLimit: 2, HoldSeconds: 60, OpensAt: opens})
	if err != nil || !created {
		f.t.Fatalf("PutSKU = created %v, %v; want created", created, err)
	}
	want := revguard.SKU{ID: "sku-1", Stock: 10, Available: 10, PerCustomerLimit: 2, HoldSeconds: 60, OpensAt: opens}
	for _, s := range []revguard.SKU{got, f.check("sku-1")} {
		if s.ID != want.ID || s.Stock != want.Stock || s.Available != want.Available || s.Held != 0 || s.Sold != 0 ||
			s.PerCustomerLimit != want.PerCustomerLimit || s.HoldSeconds != want.HoldSeconds || !s.OpensAt.Equal(opens) {
			f.t.Fatalf("SKU = %+v, want %+v", s, want)
		}
	}
}

func testPutUpdated(f *invFixture) {
	f.put("sku-1", 10, 1, 600)
	opens := f.clock.Now().Add(time.Hour)
	s, created, err := f.inv.PutSKU(f.ctx, "sku-1", revguard.SKUUpdate{Stock: 12, PerCustomerLimit: 3, HoldSeconds: 30, OpensAt: opens})
	if err != nil || created {
		f.t.Fatalf("PutSKU again = created %v, %v; want updated", created, err)
	}
	for _, s := range []revguard.SKU{s, f.check("sku-1")} {
		if s.Stock != 12 || s.Available != 12 || s.PerCustomerLimit != 3 || s.HoldSeconds != 30 || !s.OpensAt.Equal(opens) {
			f.t.Fatalf("after update: %+v", s)
		}
	}
	// Back to open at once.
	s = f.put("sku-1", 12, 3, 30)
	if !s.OpensAt.IsZero() {
		f.t.Fatalf("OpensAt = %v after a PUT without opens_at, want zero", s.OpensAt)
	}
}

func testPutRestock(f *invFixture) {
	f.put("sku-1", 2, 2, 600)
	r := f.reserve("sku-1", "c1", 2)
	f.confirm(r, "")
	f.counts("sku-1", 2, 0, 0, 2)
	_, _, err := f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c2", Quantity: 1})
	f.wantCode("Reserve before restock", err, revguard.CodeSoldOut)
	f.put("sku-1", 5, 2, 600)
	f.counts("sku-1", 5, 3, 0, 2)
	f.reserve("sku-1", "c2", 2)
	f.reserve("sku-1", "c3", 1)
	f.counts("sku-1", 5, 0, 3, 2)
}

func testPutKeepsHolds(f *invFixture) {
	f.put("sku-1", 10, 2, 600)
	held := f.reserve("sku-1", "c1", 2)
	f.confirm(f.reserve("sku-1", "c2", 1), "")
	f.put("sku-1", 10, 5, 30)
	f.counts("sku-1", 10, 7, 2, 1)
	f.sameReservation("hold after PutSKU", f.find(held.ID), held)
	// The old hold keeps its deadline; new holds get the new duration.
	h2 := f.reserve("sku-1", "c3", 1)
	if want := f.clock.Now().Add(30 * time.Second); !h2.ExpiresAt.Equal(want) {
		f.t.Fatalf("new hold expires at %v, want %v", h2.ExpiresAt, want)
	}
}

func testPutStockEqualsCommitted(f *invFixture) {
	f.put("sku-1", 10, 5, 600)
	f.reserve("sku-1", "c1", 2)
	f.confirm(f.reserve("sku-1", "c2", 1), "")
	f.put("sku-1", 3, 5, 600)
	f.counts("sku-1", 3, 0, 2, 1)
}

func testPutStockBelowCommitted(f *invFixture) {
	f.put("sku-1", 10, 5, 600)
	f.reserve("sku-1", "c1", 2)
	f.confirm(f.reserve("sku-1", "c2", 1), "")
	before := f.check("sku-1")
	_, _, err := f.inv.PutSKU(f.ctx, "sku-1", revguard.SKUUpdate{Stock: 2, PerCustomerLimit: 1, HoldSeconds: 5})
	f.wantCode("PutSKU below held+sold", err, revguard.CodeStockBelowCommitted)
	if after := f.check("sku-1"); after != before {
		f.t.Fatalf("a refused PutSKU changed the SKU: %+v, was %+v", after, before)
	}
}

func testFindSKUNotFound(f *invFixture) {
	_, err := f.inv.FindSKU(f.ctx, "nope")
	f.wantCode("FindSKU(nope)", err, revguard.CodeSKUNotFound)
}

func testAvailability(f *invFixture) {
	opens := f.clock.Now().Add(time.Minute)
	if _, _, err := f.inv.PutSKU(f.ctx, "sku-1", revguard.SKUUpdate{Stock: 2, PerCustomerLimit: 2, HoldSeconds: 60, OpensAt: opens}); err != nil {
		f.t.Fatal(err)
	}
	a, err := f.inv.Availability(f.ctx, "sku-1")
	if err != nil || a.SKU != "sku-1" || a.Available != 2 || a.SoldOut || !a.OpensAt.Equal(opens) {
		f.t.Fatalf("Availability = %+v, %v; want 2 available, opening at %v", a, err, opens)
	}
	f.clock.Advance(time.Minute)
	f.reserve("sku-1", "c1", 2)
	a, err = f.inv.Availability(f.ctx, "sku-1")
	if err != nil || a.Available != 0 || !a.SoldOut {
		f.t.Fatalf("Availability after selling out = %+v, %v; want sold out", a, err)
	}
}

func testAvailabilityNotFound(f *invFixture) {
	_, err := f.inv.Availability(f.ctx, "nope")
	f.wantCode("Availability(nope)", err, revguard.CodeSKUNotFound)
}

func testFindIdempotentUnknown(f *invFixture) {
	f.put("sku-1", 1, 1, 60)
	r, found, err := f.inv.FindIdempotent(f.ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 1, IdempotencyKey: "k"})
	if err != nil || found || r.ID != "" {
		f.t.Fatalf("FindIdempotent(unknown key) = %+v, %v, %v; want not found", r, found, err)
	}
	f.counts("sku-1", 1, 1, 0, 0)
}

func testFindReservation(f *invFixture) {
	f.put("sku-1", 5, 2, 60)
	r := f.reserve("sku-1", "c1", 2)
	f.sameReservation("FindReservation", f.find(r.ID), r)
	// It reports the owner, so that the gateway can hide it from everyone else.
	if got := f.find(r.ID); got.CustomerID != "c1" {
		f.t.Fatalf("CustomerID = %q, want c1", got.CustomerID)
	}
	c := f.confirm(r, "order-1")
	f.sameReservation("FindReservation after confirm", f.find(r.ID), c)
}

func testFindReservationNotFound(f *invFixture) {
	f.put("sku-1", 5, 2, 60)
	r := f.reserve("sku-1", "c1", 1)
	for _, id := range []string{"", "nope", otherID(r.ID), r.ID + "0", "../../etc/passwd"} {
		_, err := f.inv.FindReservation(f.ctx, id)
		f.wantCode("FindReservation("+id+")", err, revguard.CodeReservationNotFound)
	}
	// An id is an opaque string: another spelling of it (lower case) is no id, and
	// changes nothing.
	if lower := strings.ToLower(r.ID); lower != r.ID {
		_, err := f.inv.FindReservation(f.ctx, lower)
		f.wantCode("FindReservation("+lower+")", err, revguard.CodeReservationNotFound)
		_, err = f.inv.Release(f.ctx, lower, r.CustomerID)
		f.wantCode("Release("+lower+")", err, revguard.CodeReservationNotFound)
		_, err = f.inv.Confirm(f.ctx, revguard.ConfirmRequest{ID: lower, CustomerID: r.CustomerID})
		f.wantCode("Confirm("+lower+")", err, revguard.CodeReservationNotFound)
		if got, err := f.inv.FindReservation(f.ctx, r.ID); err != nil || got.Status != revguard.StatusHeld {
			f.t.Fatalf("FindReservation(%s) after the other spellings: %v, %v; want held", r.ID, got.Status, err)
		}
	}
}

// otherID returns a well-formed id that differs from id in its last character.
func otherID(id string) string {
	if id == "" {
		return "01J00000000000000000000000"
	}
	last := id[len(id)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return id[:len(id)-1] + string(repl)
}
