package postgres

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/revenueguard/revguard"
)

// resRow is one reservation's net change in a batch.
type resRow struct {
	id, sku, customer   string
	quantity            int64
	status              revguard.Status
	created, expires    int64
	confirmed, released int64 // noTime when the batch sets none
	orderRef            string
	seq                 uint64 // the highest event folded in
	stateSeq            uint64 // the event that carried the creation state, 0 for none
	confSeq, relSeq     uint64 // the events that set confirmed and released
	refSeq              uint64 // the event that set orderRef
	first               *revguard.Event
}

// fold applies ev, of any seq relative to those already folded, to r: the fields of
// the highest-seq event win, but for the order reference, which the first confirm
// with one sets for good (as applying the events in order does).
func (r *resRow) fold(ev *revguard.Event) {
	if ev.Type == revguard.EventReserved || !ev.CreatedAt.IsZero() {
		if ev.Seq > r.stateSeq {
			r.stateSeq, r.sku, r.customer, r.quantity = ev.Seq, ev.SKU, ev.CustomerID, ev.Quantity
			r.created, r.expires = nanos(cmp.Or(ev.CreatedAt, ev.Time)), nanos(ev.ExpiresAt)
		}
	}
	if ev.Seq > r.seq {
		r.seq = ev.Seq
		switch ev.Type {
		case revguard.EventReserved:
			r.status = revguard.StatusHeld
		case revguard.EventConfirmed:
			r.status = revguard.StatusConfirmed
		case revguard.EventReleased:
			r.status = revguard.StatusReleased
		case revguard.EventExpired:
			r.status = revguard.StatusExpired
		}
	}
	switch {
	case ev.Type == revguard.EventConfirmed && ev.Seq > r.confSeq:
		r.confSeq, r.confirmed = ev.Seq, ev.Time.UnixNano()
	case ev.Type == revguard.EventReleased && ev.Seq > r.relSeq:
		r.relSeq, r.released = ev.Seq, ev.Time.UnixNano()
	}
	if ev.OrderRef != "" && (r.refSeq == 0 || ev.Seq < r.refSeq) {
		r.refSeq, r.orderRef = ev.Seq, ev.OrderRef
	}
}

// netBatch is the net effect of a batch of events, ready for the statements. Its
// buffers are reused from batch to batch.
type netBatch struct {
	rows    []resRow
	byID    map[string]int    // reservation id: index in rows
	skus    []*revguard.Event // the highest-seq EventSKUPut of each SKU
	bySKU   map[string]int    // SKU id: index in skus
	history []*revguard.Event // every EventSKUPut
	last    *revguard.Event   // the highest seq
	low     uint64            // the lowest seq

	// Built from the above, each in key order: rows with their creation state (for the
	// stage), the others (as arrays), and SKU settings (as arrays).
	insert    []*resRow
	update    updateArrays
	sku, hist skuArrays
}

// reset empties b for the next batch, dropping references to the last one's events.
func (b *netBatch) reset() {
	clear(b.rows)
	clear(b.skus)
	clear(b.history)
	clear(b.insert)
	b.rows, b.skus, b.history, b.insert = b.rows[:0], b.skus[:0], b.history[:0], b.insert[:0]
	b.last, b.low = nil, 0
	if b.byID == nil {
		b.byID, b.bySKU = make(map[string]int), make(map[string]int)
	}
	clear(b.byID)
	clear(b.bySKU)
	b.update.reset()
	b.sku.reset()
	b.hist.reset()
}

// add folds ev into b. It fails for an event that no journal or outbox makes.
func (b *netBatch) add(ev *revguard.Event) error {
	if ev.Seq == 0 || ev.Seq > math.MaxInt64 {
		return fmt.Errorf("postgres: apply event: seq %d out of range", ev.Seq)
	}
	if b.last == nil || ev.Seq > b.last.Seq {
		b.last = ev
	}
	if b.low == 0 || ev.Seq < b.low {
		b.low = ev.Seq
	}
	switch ev.Type {
	case revguard.EventSKUPut:
		if ev.SKU == "" {
			return fmt.Errorf("postgres: apply event %d (%s): no SKU", ev.Seq, ev.Type)
		}
		b.history = append(b.history, ev)
		if i, ok := b.bySKU[ev.SKU]; !ok {
			b.bySKU[ev.SKU] = len(b.skus)
			b.skus = append(b.skus, ev)
		} else if ev.Seq > b.skus[i].Seq {
			b.skus[i] = ev
		}
	case revguard.EventReserved, revguard.EventConfirmed, revguard.EventReleased, revguard.EventExpired:
		if ev.ReservationID == "" {
			return fmt.Errorf("postgres: apply event %d (%s): no reservation id", ev.Seq, ev.Type)
		}
		if (ev.Type == revguard.EventReserved || !ev.CreatedAt.IsZero()) && (ev.SKU == "" || ev.CustomerID == "" || ev.ExpiresAt.IsZero()) {
			return fmt.Errorf("postgres: apply event %d (%s): reservation %q without SKU, customer or expiry", ev.Seq, ev.Type, ev.ReservationID)
		}
		i, ok := b.byID[ev.ReservationID]
		if !ok {
			i = len(b.rows)
			b.byID[ev.ReservationID] = i
			b.rows = append(b.rows, resRow{id: ev.ReservationID, confirmed: noTime, released: noTime, first: ev})
		}
		b.rows[i].fold(ev)
	default:
		return fmt.Errorf("postgres: apply event %d: unknown type %d", ev.Seq, ev.Type)
	}
	return nil
}

// build sorts the folded rows by key and splits them for the statements.
func (b *netBatch) build() {
	slices.SortFunc(b.rows, func(x, y resRow) int { return strings.Compare(x.id, y.id) })
	for i := range b.rows {
		if b.rows[i].stateSeq != 0 {
			b.insert = append(b.insert, &b.rows[i])
		} else {
			b.update.add(&b.rows[i])
		}
	}
	slices.SortFunc(b.skus, func(x, y *revguard.Event) int { return strings.Compare(x.SKU, y.SKU) })
	for _, ev := range b.skus {
		b.sku.add(ev)
	}
	slices.SortFunc(b.history, func(x, y *revguard.Event) int {
		return cmp.Or(strings.Compare(x.SKU, y.SKU), cmp.Compare(x.Seq, y.Seq))
	})
	for _, ev := range b.history {
		b.hist.add(ev)
	}
}

// updateArrays are the columns of changes without creation state, one array each.
type updateArrays struct {
	id, status, orderRef     []string
	confirmed, released, seq []int64
	rows                     []*resRow
}

func (a *updateArrays) reset() {
	clear(a.rows)
	a.id, a.status, a.orderRef = a.id[:0], a.status[:0], a.orderRef[:0]
	a.confirmed, a.released, a.seq, a.rows = a.confirmed[:0], a.released[:0], a.seq[:0], a.rows[:0]
}

func (a *updateArrays) add(r *resRow) {
	a.id, a.status, a.orderRef = append(a.id, r.id), append(a.status, string(r.status)), append(a.orderRef, r.orderRef)
	a.confirmed, a.released = append(a.confirmed, r.confirmed), append(a.released, r.released)
	a.seq, a.rows = append(a.seq, int64(r.seq)), append(a.rows, r)
}

// skuArrays are the columns of SKU settings, one array each.
type skuArrays struct {
	sku                                  []string
	stock, limit, hold, opens, time, seq []int64
}

func (a *skuArrays) reset() {
	a.sku, a.stock, a.limit, a.hold = a.sku[:0], a.stock[:0], a.limit[:0], a.hold[:0]
	a.opens, a.time, a.seq = a.opens[:0], a.time[:0], a.seq[:0]
}

func (a *skuArrays) add(ev *revguard.Event) {
	a.sku, a.stock, a.limit = append(a.sku, ev.SKU), append(a.stock, ev.Stock), append(a.limit, ev.PerCustomerLimit)
	a.hold, a.opens = append(a.hold, ev.HoldSeconds), append(a.opens, nanos(ev.OpensAt))
	a.time, a.seq = append(a.time, ev.Time.UnixNano()), append(a.seq, int64(ev.Seq))
}

// stageSource feeds the rows with creation state to COPY, one []any reused for every
// row.
type stageSource struct {
	rows []*resRow
	i    int
	vals [11]any
}

// stageColumns are the columns of stageSource's values, in order.
var stageColumns = []string{"id", "sku", "customer_id", "quantity", "status", "created_at", "expires_at",
	"confirmed_at", "released_at", "order_ref", "seq"}

func (s *stageSource) Next() bool { s.i++; return s.i < len(s.rows) }

func (s *stageSource) Err() error { return nil }

func (s *stageSource) Values() ([]any, error) {
	r, v := s.rows[s.i], &s.vals
	v[0], v[1], v[2], v[3], v[4], v[5], v[6] = r.id, r.sku, r.customer, r.quantity, string(r.status), r.created, r.expires
	v[7], v[8], v[9], v[10] = nil, nil, nil, int64(r.seq)
	if r.confirmed != noTime {
		v[7] = r.confirmed
	}
	if r.released != noTime {
		v[8] = r.released
	}
	if r.orderRef != "" {
		v[9] = r.orderRef
	}
	return v[:], nil
}
