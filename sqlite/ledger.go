package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/cursor"
	sqlite3 "modernc.org/sqlite/lib"
)

var (
	_ revguard.Ledger       = (*Ledger)(nil)
	_ revguard.LedgerSyncer = (*Ledger)(nil)
)

// Ledger is the permanent order history (revguard.Ledger) in a DB: one row per
// reservation in its latest state, and the seq of the last journal event applied, both
// written in the same transaction so that a replay after a crash neither skips nor
// repeats an event.
type Ledger struct {
	db *DB

	// mu is held by ApplyEvents for its whole transaction: it guards batch and args,
	// buffers reused from batch to batch. (The DB's one writer connection serialises
	// the transactions anyway.)
	mu    sync.Mutex
	batch netBatch
	args  []any
}

// NewLedger returns the ledger stored in db, which must be open.
func NewLedger(db *DB) *Ledger { return &Ledger{db: db} }

// LastApplied returns the seq of the last event applied, 0 for none.
func (l *Ledger) LastApplied(ctx context.Context) (uint64, error) {
	r, err := l.db.reader()
	if err != nil {
		return 0, err
	}
	var seq int64
	if err := r.QueryRowContext(ctx, `SELECT last_applied FROM ledger_meta WHERE id = 1`).Scan(&seq); err != nil {
		return 0, storeErr("read last applied", err)
	}
	return uint64(seq), nil
}

// Sync makes every batch ApplyEvents has committed durable, and returns the seq of the
// last event applied (revguard.LedgerSyncer). It may run while ApplyEvents writes the
// next batch.
func (l *Ledger) Sync(ctx context.Context) (uint64, error) {
	// The seq is read first: the fsync after it covers every commit the read saw.
	seq, err := l.LastApplied(ctx)
	if err != nil {
		return 0, err
	}
	if err := l.db.syncWAL(); err != nil {
		return 0, err
	}
	return seq, nil
}

// putSKU creates or replaces a SKU's settings.
const putSKU = `INSERT INTO skus (id, stock, per_customer_limit, hold_seconds, opens_at, updated_at, seq)
	VALUES (?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET stock = excluded.stock,
		per_customer_limit = excluded.per_customer_limit, hold_seconds = excluded.hold_seconds,
		opens_at = excluded.opens_at, updated_at = excluded.updated_at, seq = excluded.seq`

// putSKUHistory records one put in the SKUs' history (migration 4), idempotently. Its
// arguments are putSKU's.
const putSKUHistory = `INSERT INTO sku_history (sku, stock, per_customer_limit, hold_seconds, opens_at, time, seq)
	VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku, seq) DO NOTHING`

// ApplyEvents applies events, in order, in one transaction that also records the seq of
// the last one. Events with Seq <= LastApplied are skipped, so applying a batch again,
// or a batch that overlaps the last one, changes nothing for the events already there.
// Events must be in increasing Seq order. See apply.go for how a batch becomes SQL.
//
// It returns once the transaction is committed: readers see it, and it survives a
// crash of the process, but it is durable against a crash of the machine only after
// Sync.
func (l *Ledger) ApplyEvents(ctx context.Context, events []revguard.Event) error {
	if len(events) == 0 {
		return nil
	}
	for i := 1; i < len(events); i++ {
		if events[i].Seq <= events[i-1].Seq {
			return fmt.Errorf("sqlite: apply events: seq %d after %d: events out of order", events[i].Seq, events[i-1].Seq)
		}
	}
	if events[len(events)-1].Seq > math.MaxInt64 {
		return fmt.Errorf("sqlite: apply events: seq %d out of range", events[len(events)-1].Seq)
	}
	w, err := l.db.writer()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return storeErr("apply events: begin", err)
	}
	defer tx.Rollback()

	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT last_applied FROM ledger_meta WHERE id = 1`).Scan(&last); err != nil {
		return storeErr("apply events: read last applied", err)
	}
	b := &l.batch
	b.reset()
	defer b.reset() // drop references to the events
	for i := range events {
		if events[i].Seq <= uint64(last) {
			continue
		}
		if err := b.add(&events[i]); err != nil {
			return err
		}
	}
	if len(b.inserts)+len(b.updates)+len(b.skus) == 0 {
		return nil // a replay of events already in the ledger
	}
	// The statements run without ctx's cancellation: the driver watches a cancellable
	// context with one goroutine and a progress callback per statement, which costs
	// more than the statement itself. The transaction still ends with ctx (database/sql
	// rolls it back), and ctx is checked between the steps.
	a := applier{ctx: context.WithoutCancel(ctx), db: l.db, tx: tx, args: l.args[:0]}
	defer func() { l.args = a.args[:0] }()
	for _, step := range []func() error{
		func() error { return a.putSKUs(putSKU, b.skus) },
		func() error { return a.putSKUs(putSKUHistory, b.puts) },
		func() error { return a.insert(b.inserts) },
		func() error { return a.update(b.updates) },
	} {
		if err := step(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("sqlite: apply events: %w", ctx.Err())
		}
	}
	end := events[len(events)-1]
	if _, err := tx.ExecContext(ctx, `UPDATE ledger_meta SET last_applied = ?, last_event_time = ? WHERE id = 1`,
		int64(end.Seq), end.Time.UnixNano()); err != nil {
		return fmt.Errorf("sqlite: apply events: record seq %d: %w", end.Seq, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: apply events %d..%d: commit: %w", events[0].Seq, end.Seq, err)
	}
	return nil
}

// isConstraint reports whether err is a constraint violation.
func isConstraint(err error) bool {
	var e interface{ Code() int }
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// orderColumns are the columns scanRow reads, in order.
const orderColumns = `id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq`

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanRow reads one reservation row selected with orderColumns, and the seq of the last
// event applied to it.
func scanRow(s scanner) (revguard.Reservation, uint64, error) {
	var (
		r                     revguard.Reservation
		status                string
		created, expires, seq int64
		confirmed, released   sql.NullInt64
		ref                   sql.NullString
	)
	if err := s.Scan(&r.ID, &r.SKU, &r.CustomerID, &r.Quantity, &status, &created, &expires,
		&confirmed, &released, &ref, &seq); err != nil {
		return r, 0, err
	}
	r.Status = revguard.Status(status)
	r.CreatedAt = time.Unix(0, created).UTC()
	r.ExpiresAt = time.Unix(0, expires).UTC()
	r.ConfirmedAt = fromNanos(confirmed)
	r.ReleasedAt = fromNanos(released)
	r.OrderRef = ref.String
	return r, uint64(seq), nil
}

// FindOrders returns one page of reservations matching f, in id order (ascending, or
// descending with f.NewestFirst). It fails with CodeInvalidRequest for a limit out of
// range, an unknown status, or a cursor that is not the next_cursor of the same query.
func (l *Ledger) FindOrders(ctx context.Context, f revguard.OrderFilter) (revguard.OrderPage, error) {
	pg, err := cursor.Parse(l.db.cursorKey, f)
	if err != nil {
		return revguard.OrderPage{}, err
	}
	limit, after := pg.Limit, pg.After
	r, err := l.db.reader()
	if err != nil {
		return revguard.OrderPage{}, err
	}

	var (
		where []string
		args  []any
	)
	if f.SKU != "" {
		where, args = append(where, "sku = ?"), append(args, f.SKU)
	}
	if f.CustomerID != "" {
		where, args = append(where, "customer_id = ?"), append(args, f.CustomerID)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	order := "ASC"
	if f.NewestFirst {
		order = "DESC"
	}
	if f.Cursor != "" {
		if f.NewestFirst {
			where = append(where, "id < ?")
		} else {
			where = append(where, "id > ?")
		}
		args = append(args, after)
	}
	q := `SELECT ` + orderColumns + ` FROM reservations`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id ` + order + ` LIMIT ?`
	args = append(args, limit+1) // one more tells whether a next page exists

	rows, err := r.QueryContext(ctx, q, args...)
	if err != nil {
		return revguard.OrderPage{}, storeErr("find orders", err)
	}
	defer rows.Close()
	page := revguard.OrderPage{Items: make([]revguard.Reservation, 0, min(limit, 64))}
	more := false
	for rows.Next() {
		if len(page.Items) == limit {
			more = true
			break
		}
		res, _, err := scanRow(rows)
		if err != nil {
			return revguard.OrderPage{}, storeErr("find orders: scan", err)
		}
		page.Items = append(page.Items, res)
	}
	if err := rows.Err(); err != nil {
		return revguard.OrderPage{}, storeErr("find orders", err)
	}
	if more {
		page.NextCursor = cursor.Encode(l.db.cursorKey, f, page.Items[len(page.Items)-1].ID)
	}
	return page, nil
}

// FindReservation returns reservation id as the ledger holds it, or fails with
// CodeReservationNotFound.
func (l *Ledger) FindReservation(ctx context.Context, id string) (revguard.Reservation, error) {
	r, err := l.db.reader()
	if err != nil {
		return revguard.Reservation{}, err
	}
	res, _, err := scanRow(r.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM reservations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeReservationNotFound, "no reservation %q", id)
	}
	if err != nil {
		return revguard.Reservation{}, storeErr(fmt.Sprintf("find reservation %q", id), err)
	}
	return res, nil
}
