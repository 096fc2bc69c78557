package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/revenueguard/revguard"
)

// ApplyEvents writes a batch as its net effect, worked out in Go before any SQL runs
// (netBatch, net.go), in one transaction:
//
//   - Each reservation row and each SKU row keeps the seq of the last event applied to
//     it (seq), and a statement changes a row only when the batch's net change of it
//     has a higher seq. A batch applied twice, batches that overlap, and batches
//     applied in any order by any number of writers at once therefore converge to the
//     rows of the events applied one by one in seq order.
//   - A reservation event that carries the reservation's creation state (EventReserved,
//     or any event with CreatedAt set, as the Redis outbox sends them) may create the
//     row. Those rows are copied (COPY, binary) into a temporary table of the
//     connection, ledger_stage, and go into reservations with one INSERT ... SELECT
//     ... ON CONFLICT DO UPDATE. Measured against one INSERT that takes every column
//     as an array (unnest), the stage applied a batch of 8,192 outbox events 6% to 36%
//     faster: the server materialises each unnest before reading it.
//   - A change without creation state (the embedded journal's) goes through one
//     multi-row UPDATE that takes its columns as arrays, and fails the whole batch when
//     its reservation is not in the ledger. So do the SKUs' settings and history: few
//     rows, and an UPDATE's join with a temporary table would be planned once per
//     connection, for whatever size the table had then.
//   - The statements after the COPY go in one round trip (a pgx batch), and each is
//     prepared once per connection (pgx's statement cache).
//   - Rows are sorted by key, so that concurrent writers lock common rows in the same
//     order and do not deadlock; should they anyway (a batch of creations and a batch
//     of bare changes of the same rows), the transaction is retried.
//   - sku_history gets every EventSKUPut, keyed by (sku, seq), so a repeat adds nothing.
//   - ledger_streams records the batch's highest seq under its low byte (its shard).

// maxAttempts is how many times ApplyEvents tries a transaction that PostgreSQL aborted
// to break a deadlock or a serialization conflict.
const maxAttempts = 4

// createStage makes the connection's staging table, when it connects. Its rows last
// until the end of the transaction that copied them.
const createStage = `CREATE TEMP TABLE IF NOT EXISTS ledger_stage (
	id text COLLATE "C", sku text COLLATE "C", customer_id text COLLATE "C", quantity int8, status text,
	created_at int8, expires_at int8, confirmed_at int8, released_at int8, order_ref text, seq int8)
	ON COMMIT DELETE ROWS`

// The statements of ApplyEvents. NULLIF turns the arrays' stand-ins for "not set"
// (noTime, "") into NULL.
const (
	upsertReservations = `INSERT INTO reservations AS r
		(id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq)
	SELECT id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq
	FROM pg_temp.ledger_stage
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

	if len(b.insert) > 0 {
		src := &stageSource{rows: b.insert, i: -1}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", "ledger_stage"}, stageColumns, src); err != nil {
			return l.db.formatError(ctx, span+": copy", err)
		}
	}
	// Lock order: skus, sku_history, reservations (inserts, then updates), each in key
	// order, then the stream's row.
	var q pgx.Batch
	if s := &b.sku; len(s.sku) > 0 {
		q.Queue(upsertSKUs, s.sku, s.stock, s.limit, s.hold, s.opens, s.time, s.seq)
	}
	if h := &b.hist; len(h.sku) > 0 {
		q.Queue(insertHistory, h.sku, h.stock, h.limit, h.hold, h.opens, h.time, h.seq)
	}
	if len(b.insert) > 0 {
		q.Queue(upsertReservations)
	}
	update := -1
	if u := &b.update; len(u.id) > 0 {
		update = q.Len()
		q.Queue(updateReservations, u.id, u.status, u.confirmed, u.released, u.orderRef, u.seq)
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
