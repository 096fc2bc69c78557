package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/revenueguard/revguard"
)

// ApplyEvents writes a batch as its net effect, worked out in Go before any SQL runs
// (netBatch), in one transaction of at most five statements sent in one round trip:
//
//   - Each reservation row and each SKU row keeps the seq of the last event applied to
//     it (seq), and a statement changes a row only when the batch's net change of it
//     has a higher seq. A batch applied twice, batches that overlap, and batches
//     applied in any order by any number of writers at once therefore converge to the
//     rows of the events applied one by one in seq order.
//   - A reservation event that carries the reservation's creation state (EventReserved,
//     or any event with CreatedAt set, as the Redis outbox sends them) may create the
//     row: it goes through one multi-row INSERT ... ON CONFLICT DO UPDATE. A change
//     without that state (the embedded journal's) goes through one multi-row UPDATE,
//     and fails the whole batch when its reservation is not in the ledger.
//   - Each statement takes its rows as arrays (unnest), one parameter per column:
//     the statement is prepared once per connection (pgx's statement cache) and its
//     size does not depend on the batch's.
//   - Rows are sorted by key, so that concurrent writers lock common rows in the same
//     order and do not deadlock; should they anyway (a batch of creations and a batch
//     of bare changes of the same rows), the transaction is retried.
//   - sku_history gets every EventSKUPut, keyed by (sku, seq), so a repeat adds nothing.
//   - ledger_streams records the batch's highest seq under its low byte (its shard).

// maxAttempts is how many times ApplyEvents tries a transaction that PostgreSQL aborted
// to break a deadlock or a serialization conflict.
const maxAttempts = 4

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

// fold applies ev, of any seq relative to those already folded, to r.
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
	// The first order reference sticks, as when events are applied in order.
	if ev.OrderRef != "" && (r.refSeq == 0 || ev.Seq < r.refSeq) {
		r.refSeq, r.orderRef = ev.Seq, ev.OrderRef
	}
}

// netBatch is the net effect of a batch of events, and the statements' arrays. Its
// buffers are reused from batch to batch.
type netBatch struct {
	rows    []resRow
	byID    map[string]int    // reservation id: index in rows
	skus    []*revguard.Event // the highest-seq EventSKUPut of each SKU
	bySKU   map[string]int    // SKU id: index in skus
	history []*revguard.Event // every EventSKUPut
	last    *revguard.Event   // the highest seq
	low     uint64            // the lowest seq

	insert, update resArrays
	sku, hist      skuArrays
}

// reset empties b for the next batch, dropping references to the last one's events.
func (b *netBatch) reset() {
	clear(b.rows)
	clear(b.skus)
	clear(b.history)
	b.rows, b.skus, b.history, b.last, b.low = b.rows[:0], b.skus[:0], b.history[:0], nil, 0
	if b.byID == nil {
		b.byID, b.bySKU = make(map[string]int), make(map[string]int)
	}
	clear(b.byID)
	clear(b.bySKU)
	b.insert.reset()
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

// build fills the statements' arrays from the folded rows, each in key order.
func (b *netBatch) build() {
	slices.SortFunc(b.rows, func(x, y resRow) int { return strings.Compare(x.id, y.id) })
	for i := range b.rows {
		if b.rows[i].stateSeq != 0 {
			b.insert.add(&b.rows[i])
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

// resArrays are the columns of reservation rows, one array each.
type resArrays struct {
	id, sku, customer, status, orderRef                  []string
	quantity, created, expires, confirmed, released, seq []int64
	rows                                                 []*resRow
}

func (a *resArrays) reset() {
	clear(a.rows)
	a.id, a.sku, a.customer, a.status, a.orderRef = a.id[:0], a.sku[:0], a.customer[:0], a.status[:0], a.orderRef[:0]
	a.quantity, a.created, a.expires = a.quantity[:0], a.created[:0], a.expires[:0]
	a.confirmed, a.released, a.seq, a.rows = a.confirmed[:0], a.released[:0], a.seq[:0], a.rows[:0]
}

func (a *resArrays) add(r *resRow) {
	a.id, a.sku, a.customer = append(a.id, r.id), append(a.sku, r.sku), append(a.customer, r.customer)
	a.status, a.orderRef = append(a.status, string(r.status)), append(a.orderRef, r.orderRef)
	a.quantity, a.created, a.expires = append(a.quantity, r.quantity), append(a.created, r.created), append(a.expires, r.expires)
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

// The statements of ApplyEvents. NULLIF turns the arrays' stand-ins for "not set"
// (noTime, "") into NULL.
const (
	upsertReservations = `INSERT INTO reservations AS r
		(id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq)
	SELECT id, sku, customer_id, quantity, status, created_at, expires_at,
		nullif(confirmed_at, -9223372036854775808), nullif(released_at, -9223372036854775808), nullif(order_ref, ''), seq
	FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::text[], $11::int8[])
		AS v(id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq)
	ON CONFLICT (id) DO UPDATE SET status = excluded.status, expires_at = excluded.expires_at,
		confirmed_at = coalesce(excluded.confirmed_at, r.confirmed_at),
		released_at = coalesce(excluded.released_at, r.released_at),
		order_ref = coalesce(r.order_ref, excluded.order_ref), seq = excluded.seq
	WHERE r.seq < excluded.seq`

	updateReservations = `UPDATE reservations AS r SET status = v.status,
		confirmed_at = coalesce(nullif(v.confirmed_at, -9223372036854775808), r.confirmed_at),
		released_at = coalesce(nullif(v.released_at, -9223372036854775808), r.released_at),
		order_ref = coalesce(r.order_ref, nullif(v.order_ref, '')), seq = v.seq
	FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::int8[])
		AS v(id, status, confirmed_at, released_at, order_ref, seq)
	WHERE r.id = v.id AND r.seq < v.seq`

	// missingReservations returns one of the ids that no row has.
	missingReservations = `SELECT v.id FROM unnest($1::text[]) AS v(id)
	WHERE NOT EXISTS (SELECT 1 FROM reservations r WHERE r.id = v.id) LIMIT 1`

	upsertSKUs = `INSERT INTO skus AS s (id, stock, per_customer_limit, hold_seconds, opens_at, updated_at, seq)
	SELECT id, stock, lim, hold, nullif(opens, -9223372036854775808), t, seq
	FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
		AS v(id, stock, lim, hold, opens, t, seq)
	ON CONFLICT (id) DO UPDATE SET stock = excluded.stock, per_customer_limit = excluded.per_customer_limit,
		hold_seconds = excluded.hold_seconds, opens_at = excluded.opens_at, updated_at = excluded.updated_at,
		seq = excluded.seq
	WHERE s.seq < excluded.seq`

	insertHistory = `INSERT INTO sku_history (sku, seq, time, stock, per_customer_limit, hold_seconds, opens_at)
	SELECT sku, seq, t, stock, lim, hold, nullif(opens, -9223372036854775808)
	FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])
		AS v(sku, stock, lim, hold, opens, t, seq)
	ON CONFLICT (sku, seq) DO NOTHING`

	recordStream = `INSERT INTO ledger_streams AS s (stream, last_applied, last_event_time) VALUES ($1, $2, $3)
	ON CONFLICT (stream) DO UPDATE SET last_applied = excluded.last_applied, last_event_time = excluded.last_event_time
	WHERE s.last_applied < excluded.last_applied`
)

// ApplyEvents applies events, in any order, in one transaction, together with the
// highest seq among them (see the comment at the top of apply.go). Events already
// applied change nothing. A change, without its creation state, of a reservation that
// is not in the ledger fails the whole batch, as does an event of an unknown type or
// with a seq of 0 or above math.MaxInt64. It fails with CodeUnavailable when the
// database cannot be reached or does not answer within the DB's Timeout.
func (l *Ledger) ApplyEvents(ctx context.Context, events []revguard.Event) error {
	if len(events) == 0 {
		return nil
	}
	pool, err := l.db.acquirePool()
	if err != nil {
		return err
	}
	b, _ := l.batches.Get().(*netBatch)
	if b == nil {
		b = new(netBatch)
	}
	defer func() {
		b.reset()
		l.batches.Put(b)
	}()
	b.reset()
	for i := range events {
		if err := b.add(&events[i]); err != nil {
			return err
		}
	}
	b.build()
	for attempt := 1; ; attempt++ {
		err := l.apply(ctx, pool, b)
		if pe, ok := errors.AsType[*pgconn.PgError](err); !ok || attempt == maxAttempts ||
			(pe.Code != "40P01" && pe.Code != "40001") || ctx.Err() != nil {
			return err
		}
	}
}

// apply runs one transaction that writes b.
func (l *Ledger) apply(ctx context.Context, pool *pgxpool.Pool, b *netBatch) error {
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	span := fmt.Sprintf("apply events %d..%d", b.low, b.last.Seq)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return l.db.formatError(ctx, span+": begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	// Lock order: skus, sku_history, reservations (inserts, then updates), each in key
	// order, then the stream's row.
	var q pgx.Batch
	if s := &b.sku; len(s.sku) > 0 {
		q.Queue(upsertSKUs, s.sku, s.stock, s.limit, s.hold, s.opens, s.time, s.seq)
	}
	if h := &b.hist; len(h.sku) > 0 {
		q.Queue(insertHistory, h.sku, h.stock, h.limit, h.hold, h.opens, h.time, h.seq)
	}
	if r := &b.insert; len(r.id) > 0 {
		q.Queue(upsertReservations, r.id, r.sku, r.customer, r.quantity, r.status, r.created, r.expires,
			r.confirmed, r.released, r.orderRef, r.seq)
	}
	update := -1
	if r := &b.update; len(r.id) > 0 {
		update = q.Len()
		q.Queue(updateReservations, r.id, r.status, r.confirmed, r.released, r.orderRef, r.seq)
	}
	q.Queue(recordStream, int16(b.last.Seq&0xff), int64(b.last.Seq), b.last.Time.UnixNano())

	br := tx.SendBatch(ctx, &q)
	var updated int64
	for i := range q.Len() {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return l.db.formatError(ctx, span, err)
		}
		if i == update {
			updated = tag.RowsAffected()
		}
	}
	if err := br.Close(); err != nil {
		return l.db.formatError(ctx, span, err)
	}
	if update >= 0 && updated < int64(len(b.update.id)) {
		// Some changes were older than their rows (a repeat), or had no row at all.
		var id string
		err := tx.QueryRow(ctx, missingReservations, b.update.id).Scan(&id)
		switch {
		case err == nil:
			ev := b.update.rows[slices.Index(b.update.id, id)].first
			return fmt.Errorf("postgres: apply event %d (%s): reservation %q is not in the ledger", ev.Seq, ev.Type, id)
		case !errors.Is(err, pgx.ErrNoRows):
			return l.db.formatError(ctx, span, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return l.db.formatError(ctx, span+": commit", err)
	}
	return nil
}
