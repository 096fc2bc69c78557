package revguard

import (
	"context"
	"time"
)

// EventType says which change an Event records.
type EventType uint8

// The kinds of journaled change. Values are stored on disk: never renumber them.
const (
	EventSKUPut    EventType = 1 // a SKU created or its settings replaced
	EventReserved  EventType = 2 // a hold created
	EventConfirmed EventType = 3 // a hold (or, with Revived, an expired one) confirmed
	EventReleased  EventType = 4 // a hold released
	EventExpired   EventType = 5 // a hold expired
)

// String returns the name of t.
func (t EventType) String() string {
	switch t {
	case EventSKUPut:
		return "sku_put"
	case EventReserved:
		return "reserved"
	case EventConfirmed:
		return "confirmed"
	case EventReleased:
		return "released"
	case EventExpired:
		return "expired"
	}
	return "unknown"
}

// Event is one acknowledged change to one SKU, as journaled. Seq numbers are assigned by
// the journal: strictly increasing, never reused, with no gaps among durable events.
// Events of one SKU appear in the order the SKU's serialisation point applied them.
type Event struct {
	Seq  uint64
	Type EventType
	Time time.Time // when the change was applied
	SKU  string

	// EventSKUPut: the new settings.
	Stock            int64
	PerCustomerLimit int64
	HoldSeconds      int64
	OpensAt          time.Time

	// Reservation events. EventReserved carries every field below except OrderRef;
	// the others carry ReservationID (and CustomerID, Quantity for convenience).
	ReservationID  string
	CustomerID     string
	Quantity       int64
	ExpiresAt      time.Time
	IdempotencyKey string
	OrderRef       string // EventConfirmed
	Revived        bool   // EventConfirmed of an expired hold

	// CreatedAt is the reservation's creation time on every reservation event of the
	// distributed outbox, which also sets ExpiresAt on each: such events carry the
	// reservation's whole state after the change, so that a ledger can apply them in
	// any order. The embedded journal leaves it zero (its events are applied in order;
	// EventReserved's Time is the creation time).
	CreatedAt time.Time
}

// EventFeed gives the durable events in sequence order to one follower (the ledger
// writer), and keeps them until the follower says it has applied them.
type EventFeed interface {
	// ReadEvents returns up to max durable events with Seq > after, in order, waiting
	// until at least one exists or ctx is done. It fails with CodeInternal-class errors
	// when events after `after` were already compacted away.
	ReadEvents(ctx context.Context, after uint64, max int) ([]Event, error)

	// Consumed tells the feed that the follower has durably applied every event with
	// Seq <= seq, so compaction may drop them. Until it is called, nothing the follower
	// could still need is dropped.
	Consumed(seq uint64)
}
