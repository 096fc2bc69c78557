package revguard

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// ChangeType names one kind of entry of the change log, as the event stream and the
// webhooks show it.
type ChangeType string

// The kinds of change. The names are part of the API: never rename one.
const (
	ChangeSKUCreated   ChangeType = "sku.created"   // a SKU put for the first time
	ChangeSKUUpdated   ChangeType = "sku.updated"   // a SKU's settings replaced (after sku.restocked when the stock rose)
	ChangeSKURestocked ChangeType = "sku.restocked" // a put raised a SKU's stock
	ChangeSKUSoldOut   ChangeType = "sku.sold_out"  // a SKU's available units reached 0
	ChangeHeld         ChangeType = "reservation.held"
	ChangeConfirmed    ChangeType = "reservation.confirmed"
	ChangeReleased     ChangeType = "reservation.released"
	ChangeExpired      ChangeType = "reservation.expired"
)

// ChangeTypes lists every ChangeType.
var ChangeTypes = []ChangeType{
	ChangeSKUCreated, ChangeSKUUpdated, ChangeSKURestocked, ChangeSKUSoldOut,
	ChangeHeld, ChangeConfirmed, ChangeReleased, ChangeExpired,
}

// Valid reports whether t is one of ChangeTypes.
func (t ChangeType) Valid() bool {
	for _, v := range ChangeTypes {
		if t == v {
			return true
		}
	}
	return false
}

// Change is one entry of the change log: one journaled event as the API shows it, or a
// fact derived from one (sku.sold_out, sku.restocked). Seqs are the change log's own,
// from 1, strictly increasing and never reused; every subscriber of the log (the event
// stream, each webhook) sees the same change under the same Seq, so its id
// ("evt_" + Seq) is stable across retries and restarts.
type Change struct {
	Seq  uint64
	Type ChangeType
	SKU  string
	Time time.Time
	Body []byte // the JSON document of the change (ChangeBody), delivered as is
}

// ChangeID returns the public id of the change with seq.
func ChangeID(seq uint64) string { return "evt_" + strconv.FormatUint(seq, 10) }

// ChangeBody is the JSON document of a change. Reservation changes carry Reservation;
// every change carries the SKU's counts just after it.
type ChangeBody struct {
	ID          string             `json:"id"`
	Seq         uint64             `json:"seq"`
	Type        ChangeType         `json:"type"`
	CreatedAt   time.Time          `json:"created_at"`
	SKU         ChangeSKU          `json:"sku"`
	Reservation *ChangeReservation `json:"reservation,omitempty"`
}

// ChangeSKU is a SKU's state just after a change.
type ChangeSKU struct {
	ID               string     `json:"id"`
	Stock            int64      `json:"stock"`
	Available        int64      `json:"available"`
	Held             int64      `json:"held"`
	Sold             int64      `json:"sold"`
	PerCustomerLimit int64      `json:"per_customer_limit,omitempty"`
	HoldSeconds      int64      `json:"hold_seconds,omitempty"`
	OpensAt          *time.Time `json:"opens_at,omitempty"`
}

// changeBodyPut is the document of a change that a SKU's PUT made (sku.created,
// sku.updated, sku.restocked): the SKU carries all its settings, opens_at null when it
// has none (an absent time is null, as everywhere in the API). Its fields shadow
// ChangeBody's and ChangeSKU's, which leave the settings out of the other changes.
type changeBodyPut struct {
	ChangeBody
	SKU changeSKUPut `json:"sku"`
}

type changeSKUPut struct {
	ChangeSKU
	OpensAt *time.Time `json:"opens_at"`
}

// ChangeReservation is the part of a reservation that its change set or names.
type ChangeReservation struct {
	ID         string     `json:"id"`
	CustomerID string     `json:"customer_id"`
	Quantity   int64      `json:"quantity"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	OrderRef   string     `json:"order_ref,omitempty"`
	Revived    bool       `json:"revived,omitempty"`
}

// SKUCounts is what the change log remembers of a SKU between events, to derive
// sku.sold_out and sku.restocked and to show the counts in each change.
type SKUCounts struct {
	SKU                           string
	Stock, Held, Sold             int64
	PerCustomerLimit, HoldSeconds int64
	OpensAt                       time.Time
}

// Available returns the units neither held nor sold.
func (c SKUCounts) Available() int64 { return c.Stock - c.Held - c.Sold }

// ChangeState is where a change log stands: the journal seq of the last event it
// turned into changes, the Seq of its last change, and the counts of every SKU.
type ChangeState struct {
	JournalSeq uint64
	LastSeq    uint64
	SKUs       map[string]SKUCounts
}

// ChangeLog stores the change log (sqlite.ChangeLog in embedded mode).
type ChangeLog interface {
	// LoadChangeState returns where the log stands.
	LoadChangeState(ctx context.Context) (ChangeState, error)

	// AppendChanges appends changes (Seqs following the last) together with the new
	// journal seq and the counts of the SKUs they touched, in one transaction. Unless
	// the log is a ChangeSyncer, it is durable when it returns.
	AppendChanges(ctx context.Context, changes []Change, journalSeq uint64, skus []SKUCounts) error

	// ReadChanges returns up to max changes with Seq > after, in order. It does not wait.
	ReadChanges(ctx context.Context, after uint64, max int) ([]Change, error)
}

// ChangeSyncer is implemented by a ChangeLog whose AppendChanges returns once a batch
// is committed but before it is durable against a crash of the machine: the
// ChangeWriter then syncs at most every ChangeSyncInterval, and tells its feed that
// events are consumed only up to what a sync covered, so that the disk's flushes do
// not follow every group commit of the journal.
type ChangeSyncer interface {
	SyncChanges(ctx context.Context) error
}

// ChangeSyncInterval is how often a ChangeWriter syncs a ChangeSyncer while changes
// flow (and once they stop).
const ChangeSyncInterval = 500 * time.Millisecond

// ChangeSeeder is implemented by a ChangeLog that shares its store with the ledger: on
// the first start over a journal whose early events were compacted away, it sets the
// log's position to the ledger's last applied event and the SKUs' counts to the
// ledger's, in one transaction, so that the log carries on from there exactly.
type ChangeSeeder interface {
	SeedChanges(ctx context.Context) error
}

// StreamChangeState is where a change log that follows several ordered streams (the
// distributed mode's outbox, one stream per shard) stands: the Seq of its last change,
// the counts of every SKU, the id of the last entry of each stream it turned into
// changes (by shard; a missing shard has had none), and the version that each append
// bumps.
type StreamChangeState struct {
	LastSeq   uint64
	SKUs      map[string]SKUCounts
	Positions map[int]string
	Version   uint64
}

// ErrChangeLogMoved is returned by StreamChangeLog.AppendStreamChanges when another
// writer appended since the state the caller read: its batch is not appended, and it
// must load the state again.
var ErrChangeLogMoved = errors.New("change log: another writer appended meanwhile")

// StreamChangeLog stores a change log that follows several streams
// (postgres.ChangeLog in distributed mode). Any number of writers may run: each append
// names the version it read, so the changes of one stream entry are appended once.
type StreamChangeLog interface {
	// LoadStreamChangeState returns where the log stands.
	LoadStreamChangeState(ctx context.Context) (StreamChangeState, error)

	// AppendStreamChanges appends changes (Seqs following the last), the streams' new
	// positions and the counts of the SKUs they touched, in one transaction, if the
	// log's version is still version, and bumps the version; otherwise it fails with
	// ErrChangeLogMoved and changes nothing. It is durable when it returns.
	AppendStreamChanges(ctx context.Context, version uint64, changes []Change, positions map[int]string, skus []SKUCounts) error
}

// ChangeReader is what the event stream and the webhooks read: the changes after a
// Seq, and a wait for new ones.
type ChangeReader interface {
	// ReadChanges returns up to max changes with Seq > after, in order, without waiting.
	ReadChanges(ctx context.Context, after uint64, max int) ([]Change, error)
	// LastChange returns the Seq of the newest change, as last learned: it may lag
	// the log by a poll where other processes append to it.
	LastChange() uint64
	// ReadLastChange returns the Seq of the newest change in the log itself, for a
	// caller that must not lag it (where a stream starts).
	ReadLastChange(ctx context.Context) (uint64, error)
	// WaitChanges blocks until a change with Seq > after exists or ctx is done
	// (then it returns ctx.Err()).
	WaitChanges(ctx context.Context, after uint64) error
}

// Changes turns a journal event into changes, keeping the SKUs' counts (SKUCounts)
// across events. It is pure: the ChangeWriter feeds it in journal order.
type Changes struct {
	SKUs    map[string]SKUCounts
	touched map[string]struct{}
	lastSeq uint64
}

// NewChanges returns a Changes that continues from st.
func NewChanges(st ChangeState) *Changes {
	skus := st.SKUs
	if skus == nil {
		skus = make(map[string]SKUCounts)
	}
	return &Changes{SKUs: skus, touched: make(map[string]struct{}), lastSeq: st.LastSeq}
}

// Apply appends to dst the changes of ev and returns dst.
func (c *Changes) Apply(dst []Change, ev *Event) []Change {
	s, existed := c.SKUs[ev.SKU]
	s.SKU = ev.SKU
	before := s
	var types [3]ChangeType
	n := 0
	var res *ChangeReservation
	switch ev.Type {
	case EventSKUPut:
		s.Stock, s.PerCustomerLimit, s.HoldSeconds, s.OpensAt = ev.Stock, ev.PerCustomerLimit, ev.HoldSeconds, ev.OpensAt
		switch {
		case !existed:
			types[n] = ChangeSKUCreated
		case s.Stock > before.Stock:
			types[n] = ChangeSKURestocked
			n++
			types[n] = ChangeSKUUpdated
		default:
			types[n] = ChangeSKUUpdated
		}
		n++
	case EventReserved:
		s.Held += ev.Quantity
		types[n], n = ChangeHeld, n+1
		exp := ev.ExpiresAt.UTC()
		res = &ChangeReservation{ID: ev.ReservationID, CustomerID: ev.CustomerID, Quantity: ev.Quantity, ExpiresAt: &exp}
	case EventConfirmed:
		if ev.Revived {
			s.Sold += ev.Quantity
		} else {
			s.Held -= ev.Quantity
			s.Sold += ev.Quantity
		}
		types[n], n = ChangeConfirmed, n+1
		res = &ChangeReservation{ID: ev.ReservationID, CustomerID: ev.CustomerID, Quantity: ev.Quantity, OrderRef: ev.OrderRef, Revived: ev.Revived}
	case EventReleased, EventExpired:
		s.Held -= ev.Quantity
		t := ChangeReleased
		if ev.Type == EventExpired {
			t = ChangeExpired
		}
		types[n], n = t, n+1
		res = &ChangeReservation{ID: ev.ReservationID, CustomerID: ev.CustomerID, Quantity: ev.Quantity}
	default:
		return dst
	}
	if existed && before.Available() > 0 && s.Available() <= 0 {
		types[n], n = ChangeSKUSoldOut, n+1
	}
	c.SKUs[ev.SKU] = s
	c.touched[ev.SKU] = struct{}{}
	for _, t := range types[:n] {
		c.lastSeq++
		body := ChangeBody{
			ID: ChangeID(c.lastSeq), Seq: c.lastSeq, Type: t, CreatedAt: ev.Time.UTC(),
			SKU: ChangeSKU{ID: ev.SKU, Stock: s.Stock, Available: s.Available(), Held: s.Held, Sold: s.Sold},
		}
		if t != ChangeSKUSoldOut {
			body.Reservation = res
		}
		var doc any = body
		if ev.Type == EventSKUPut && t != ChangeSKUSoldOut { // a sold-out carries only the counts, whatever made it
			body.SKU.PerCustomerLimit, body.SKU.HoldSeconds = s.PerCustomerLimit, s.HoldSeconds
			put := changeBodyPut{ChangeBody: body, SKU: changeSKUPut{ChangeSKU: body.SKU}}
			if !s.OpensAt.IsZero() {
				o := s.OpensAt.UTC()
				put.SKU.OpensAt = &o
			}
			doc = put
		}
		b, err := json.Marshal(doc)
		if err != nil {
			panic("revguard: marshal change: " + err.Error()) // plain types: cannot fail
		}
		dst = append(dst, Change{Seq: c.lastSeq, Type: t, SKU: ev.SKU, Time: body.CreatedAt, Body: b})
	}
	return dst
}

// Touched returns the counts of the SKUs changed since the last call, and forgets them.
func (c *Changes) Touched() []SKUCounts {
	out := make([]SKUCounts, 0, len(c.touched))
	for id := range c.touched {
		out = append(out, c.SKUs[id])
	}
	clear(c.touched)
	return out
}
