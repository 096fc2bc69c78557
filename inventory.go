package revguard

import "context"

// ReserveRequest asks for a hold of Quantity units of SKU for CustomerID.
type ReserveRequest struct {
	SKU            string
	CustomerID     string
	Quantity       int64  // 1 to the SKU's per-customer limit
	IdempotencyKey string // optional; scoped to CustomerID
}

// ConfirmRequest asks to turn a hold into a sale.
type ConfirmRequest struct {
	ID         string
	CustomerID string // must own the reservation
	OrderRef   string // optional, recorded on the first successful confirm
	Revive     bool   // confirm an expired reservation by taking its units again
}

// Inventory is the set of per-SKU serialisation points. Every change to one SKU is
// applied one at a time, in one order, and is durable before the method returns: a
// method that returned without error has a change that survives a crash. Reads are
// exact: they see every change acknowledged before they started, and never a change
// that is not yet durable.
//
// Every change is timed at its SKU's serialisation point, when it is applied: per SKU,
// the times of changes (a reservation's CreatedAt, ConfirmedAt, ReleasedAt, the times of
// expiries and puts, and their events' Time) never decrease in the order the changes
// are applied, even if the clock steps back; a hold's ExpiresAt is its CreatedAt plus
// the SKU's hold duration exactly. So a hold is never timed before the release or
// expiry whose units it took, and the order history never shows more units held or
// sold than the stock at any instant (CheckHeldWithinStock).
//
// Errors are *Error values with the codes named below; any other error is internal.
type Inventory interface {
	// PutSKU creates the SKU id, or replaces its settings, with u (normalized and
	// validated by the caller). Raising Stock is a restock: the new units are available at
	// once. It reports whether the SKU was created. It fails with CodeStockBelowCommitted,
	// changing nothing, when u.Stock < held + sold.
	PutSKU(ctx context.Context, id string, u SKUUpdate) (sku SKU, created bool, err error)

	// FindSKU returns the exact state of the SKU id, or fails with CodeSKUNotFound.
	FindSKU(ctx context.Context, id string) (SKU, error)

	// Availability returns the public view of the SKU id cheaply, without a trip through
	// the serialisation point; it may be up to one second stale. It fails with
	// CodeSKUNotFound.
	Availability(ctx context.Context, id string) (Availability, error)

	// Reserve checks, in one step at the SKU's serialisation point, that the SKU exists
	// (CodeSKUNotFound) and is open (CodeSaleNotOpen), that Quantity units are available
	// (CodeSoldOut), and that the customer's held and confirmed units of the SKU plus
	// Quantity stay within the limit (CodeLimitExceeded); then it holds the units.
	//
	// With an IdempotencyKey that the customer already used, it returns that first
	// reservation as it was created, with replayed true, and changes nothing; the same
	// key with another SKU or Quantity fails with CodeIdempotencyKeyReused. Only
	// successful reservations are remembered by key.
	Reserve(ctx context.Context, r ReserveRequest) (res Reservation, replayed bool, err error)

	// FindIdempotent looks up a reservation by the customer's idempotency key, without
	// changing anything: found is false when the key is unknown, and it fails with
	// CodeIdempotencyKeyReused when the key was used for another SKU or quantity. The
	// gateway calls it before the bot check, so that a replay costs no bot check.
	FindIdempotent(ctx context.Context, r ReserveRequest) (res Reservation, found bool, err error)

	// FindReservation returns the reservation id in its current state, or fails with
	// CodeReservationNotFound. A hold past its deadline is reported expired.
	FindReservation(ctx context.Context, id string) (Reservation, error)

	// Confirm turns the hold r.ID of r.CustomerID into a sale. Confirming a confirmed
	// reservation succeeds and changes nothing. It fails with CodeReservationNotFound
	// (unknown, or another customer's), CodeHoldReleased, CodeHoldExpired, and with
	// Revive set on an expired hold, CodeSoldOut or CodeLimitExceeded when its units
	// cannot be taken again.
	Confirm(ctx context.Context, r ConfirmRequest) (Reservation, error)

	// Release gives the units of the hold id back. customerID must own it; "" means the
	// admin, who may release any. Releasing a released reservation succeeds and changes
	// nothing. It fails with CodeReservationNotFound, CodeAlreadyConfirmed and
	// CodeHoldExpired.
	Release(ctx context.Context, id, customerID string) (Reservation, error)
}

// ReservePrechecker is implemented by an Inventory that can tell the gateway, cheaply
// and before it spends a bot check, whether a reservation is certainly refused.
type ReservePrechecker interface {
	// PrecheckReserve returns the public view of the SKU id, as Availability does, for
	// deciding whether a reservation of quantity units is refused before the bot check
	// (the sale is not open, or fewer than quantity units are available). Unlike
	// Availability it does not wait for the SKU's latest changes to become durable when
	// the view lets the request through: the reservation's own answer will wait. When
	// the view means a refusal, it waits first, so that no refusal depends on a change
	// that a crash could still lose. It fails with CodeSKUNotFound.
	PrecheckReserve(ctx context.Context, id string, quantity int64) (Availability, error)
}

// Check refuses, with CodeInvalidRequest, a request that the gateway never sends and
// that an Inventory must not act on: a quantity below 1, an empty or oversized
// customer id (the bound keeps a stored record small), an invalid idempotency key.
func (r ReserveRequest) Check() error {
	switch {
	case r.Quantity < 1:
		return Errorf(CodeInvalidRequest, "quantity must be at least 1")
	case r.CustomerID == "" || len(r.CustomerID) > 4*MaxCustomerIDLen:
		return Errorf(CodeInvalidRequest, "invalid customer id")
	case r.IdempotencyKey != "" && !ValidIdempotencyKey(r.IdempotencyKey):
		return Errorf(CodeInvalidRequest, "invalid idempotency key")
	}
	return nil
}
