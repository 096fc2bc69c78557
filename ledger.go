package revguard

import "context"

// Limits of a ledger query (API.md, GET /v1/orders).
const (
	DefaultOrderLimit = 100
	MaxOrderLimit     = 1000
)

// OrderFilter selects reservations from the ledger. Empty fields match everything.
type OrderFilter struct {
	SKU         string
	CustomerID  string
	Status      Status // "" for any
	Limit       int    // 1 to MaxOrderLimit; 0 means DefaultOrderLimit
	Cursor      string // opaque, from OrderPage.NextCursor of the same query
	NewestFirst bool   // false: oldest first (GET /v1/orders); true: newest first (GET /v1/me/reservations)
}

// OrderPage is one page of a ledger query. NextCursor is "" on the last page.
type OrderPage struct {
	Items      []Reservation
	NextCursor string
}

// Ledger is the permanent, queryable record of every reservation in its latest state. It
// follows the journal asynchronously: an item may appear, or change state, shortly after
// the change was acknowledged, but never goes missing and never appears twice.
type Ledger interface {
	// ApplyEvents applies events, in order, in one transaction, together with the new last
	// applied sequence number. Events with Seq <= LastApplied are skipped, so a batch
	// applied twice after a crash changes nothing the second time.
	ApplyEvents(ctx context.Context, events []Event) error

	// LastApplied returns the Seq of the last event applied, 0 for none.
	LastApplied(ctx context.Context) (uint64, error)

	// FindOrders returns one page of reservations matching f, ordered by reservation id
	// (creation order). Paging is stable under concurrent inserts. A forged, corrupted or
	// mismatched cursor, or an out-of-range limit, fails with CodeInvalidRequest.
	FindOrders(ctx context.Context, f OrderFilter) (OrderPage, error)
}
