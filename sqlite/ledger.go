package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
	sqlite3 "modernc.org/sqlite/lib"
)

var _ revguard.Ledger = (*Ledger)(nil)

// Ledger is the permanent order history (revguard.Ledger) in a DB: one row per
// reservation in its latest state, and the seq of the last journal event applied, both
// written in the same transaction so that a replay after a crash neither skips nor
// repeats an event.
type Ledger struct {
	db *DB
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
		return 0, fmt.Errorf("sqlite: read last applied: %w", err)
	}
	return uint64(seq), nil
}

// The statements ApplyEvents prepares, at most once per batch.
const (
	insertReservation = `INSERT INTO reservations
		(id, sku, customer_id, quantity, status, created_at, expires_at, seq)
		VALUES (?, ?, ?, ?, 'held', ?, ?, ?)`
	confirmReservation = `UPDATE reservations
		SET status = 'confirmed', confirmed_at = ?, order_ref = coalesce(order_ref, ?), seq = ?
		WHERE id = ?`
	releaseReservation = `UPDATE reservations SET status = 'released', released_at = ?, seq = ? WHERE id = ?`
	expireReservation  = `UPDATE reservations SET status = 'expired', seq = ? WHERE id = ?`
	putSKU             = `INSERT INTO skus (id, stock, per_customer_limit, hold_seconds, opens_at, updated_at, seq)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET stock = excluded.stock,
			per_customer_limit = excluded.per_customer_limit, hold_seconds = excluded.hold_seconds,
			opens_at = excluded.opens_at, updated_at = excluded.updated_at, seq = excluded.seq`
)

// ApplyEvents applies events, in order, in one transaction that also records the seq of
// the last one. Events with Seq <= LastApplied are skipped, so applying a batch again,
// or a batch that overlaps the last one, changes nothing for the events already there.
// Events must be in increasing Seq order.
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
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: apply events: begin: %w", err)
	}
	defer tx.Rollback()

	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT last_applied FROM ledger_meta WHERE id = 1`).Scan(&last); err != nil {
		return fmt.Errorf("sqlite: apply events: read last applied: %w", err)
	}
	// The statements run without ctx's cancellation: the driver watches a cancellable
	// context with one goroutine and a progress callback per statement, which costs
	// more than the statement itself. The transaction still ends with ctx (database/sql
	// rolls it back), and the loop checks ctx between events.
	a := applier{ctx: context.WithoutCancel(ctx), tx: tx}
	defer a.close()
	applied := false
	for i := range events {
		ev := &events[i]
		if ev.Seq <= uint64(last) {
			continue
		}
		if i%256 == 255 && ctx.Err() != nil {
			return fmt.Errorf("sqlite: apply events: %w", ctx.Err())
		}
		if err := a.apply(ev); err != nil {
			return err
		}
		applied = true
	}
	if !applied {
		return nil // a replay of events already in the ledger
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

// applier runs the statements of one ApplyEvents transaction, preparing each on first
// use.
type applier struct {
	ctx   context.Context
	tx    *sql.Tx
	stmts [6]*sql.Stmt // by revguard.EventType
}

// close releases the prepared statements.
func (a *applier) close() {
	for _, s := range a.stmts {
		if s != nil {
			s.Close()
		}
	}
}

// exec runs the statement for events of type t with args, and returns the number of
// rows it changed.
func (a *applier) exec(t revguard.EventType, query string, args ...any) (int64, error) {
	s := a.stmts[t]
	if s == nil {
		var err error
		if s, err = a.tx.PrepareContext(a.ctx, query); err != nil { // once per batch and type
			return 0, fmt.Errorf("prepare: %w", err)
		}
		a.stmts[t] = s
	}
	res, err := s.ExecContext(a.ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// apply writes one event.
func (a *applier) apply(ev *revguard.Event) error {
	seq := int64(ev.Seq)
	var (
		n   int64
		err error
	)
	switch ev.Type {
	case revguard.EventSKUPut:
		n, err = a.exec(ev.Type, putSKU, ev.SKU, ev.Stock, ev.PerCustomerLimit, ev.HoldSeconds,
			nanos(ev.OpensAt), ev.Time.UnixNano(), seq)
	case revguard.EventReserved:
		n, err = a.exec(ev.Type, insertReservation, ev.ReservationID, ev.SKU, ev.CustomerID, ev.Quantity,
			ev.Time.UnixNano(), ev.ExpiresAt.UnixNano(), seq)
		if isConstraint(err) {
			return fmt.Errorf("sqlite: apply event %d: reservation %q already in the ledger: %w", ev.Seq, ev.ReservationID, err)
		}
	case revguard.EventConfirmed:
		var ref any
		if ev.OrderRef != "" {
			ref = ev.OrderRef
		}
		n, err = a.exec(ev.Type, confirmReservation, ev.Time.UnixNano(), ref, seq, ev.ReservationID)
	case revguard.EventReleased:
		n, err = a.exec(ev.Type, releaseReservation, ev.Time.UnixNano(), seq, ev.ReservationID)
	case revguard.EventExpired:
		n, err = a.exec(ev.Type, expireReservation, seq, ev.ReservationID)
	default:
		return fmt.Errorf("sqlite: apply event %d: unknown type %d", ev.Seq, ev.Type)
	}
	if err != nil {
		return fmt.Errorf("sqlite: apply event %d (%s): %w", ev.Seq, ev.Type, err)
	}
	if n != 1 {
		return fmt.Errorf("sqlite: apply event %d (%s): reservation %q is not in the ledger", ev.Seq, ev.Type, ev.ReservationID)
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
	limit := f.Limit
	switch {
	case limit == 0:
		limit = revguard.DefaultOrderLimit
	case limit < 1 || limit > revguard.MaxOrderLimit:
		return revguard.OrderPage{}, revguard.Errorf(revguard.CodeInvalidRequest, "limit must be between 1 and %d", revguard.MaxOrderLimit)
	}
	if f.Status != "" && !f.Status.Valid() {
		return revguard.OrderPage{}, revguard.Errorf(revguard.CodeInvalidRequest, "status must be one of held, confirmed, released, expired")
	}
	var after string
	if f.Cursor != "" {
		var err error
		if after, err = decodeCursor(l.db.cursorKey, f); err != nil {
			return revguard.OrderPage{}, err
		}
	}
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
		return revguard.OrderPage{}, fmt.Errorf("sqlite: find orders: %w", err)
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
			return revguard.OrderPage{}, fmt.Errorf("sqlite: find orders: scan: %w", err)
		}
		page.Items = append(page.Items, res)
	}
	if err := rows.Err(); err != nil {
		return revguard.OrderPage{}, fmt.Errorf("sqlite: find orders: %w", err)
	}
	if more {
		page.NextCursor = encodeCursor(l.db.cursorKey, f, page.Items[len(page.Items)-1].ID)
	}
	return page, nil
}
