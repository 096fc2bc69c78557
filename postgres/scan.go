package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/revenueguard/revguard"
)

// ScanFilter selects the reservations of a Scan. Empty fields match everything.
type ScanFilter struct {
	SKU   string
	Since time.Time // only reservations created at or after Since
}

// Scan reads every reservation matching a filter, in id order, from one consistent
// snapshot of the ledger (a REPEATABLE READ, READ ONLY transaction), which concurrent
// writers neither block nor change: what revguard export and verify read. It holds one
// connection until Close. The time to read the rows is bounded by the context given to
// Ledger.Scan, not by the DB's Timeout, which bounds only the start.
//
//	s, err := ledger.Scan(ctx, f)
//	defer s.Close()
//	for s.Next() { use(s.Reservation()) }
//	err = s.Err()
//	history, err := s.SKUHistory(ctx, "") // the same snapshot
type Scan struct {
	db          *DB
	ctx         context.Context
	tx          pgx.Tx
	rows        pgx.Rows
	total       int
	lastApplied uint64
	res         revguard.Reservation
	seq         uint64
	err         error
	done        bool // Next has read the last row
}

// Scan starts a scan of the reservations matching f.
func (l *Ledger) Scan(ctx context.Context, f ScanFilter) (_ *Scan, err error) {
	pool, err := l.db.acquirePool()
	if err != nil {
		return nil, err
	}
	start, cancel := l.db.bound(ctx)
	defer cancel()
	tx, err := pool.BeginTx(start, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, l.db.formatError(start, "scan: begin", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	s := &Scan{db: l.db, ctx: ctx, tx: tx}
	// The first query fixes the snapshot: the seq, the count and the rows below all see
	// the same committed state.
	var last int64
	if err := tx.QueryRow(start, `SELECT coalesce(max(last_applied), 0) FROM ledger_streams`).Scan(&last); err != nil {
		return nil, l.db.formatError(start, "scan: read last applied", err)
	}
	s.lastApplied = uint64(last)
	var w where
	if f.SKU != "" {
		w.add("sku =", f.SKU)
	}
	if !f.Since.IsZero() {
		w.add("created_at >=", f.Since.UnixNano())
	}
	if err := tx.QueryRow(start, `SELECT count(*) FROM reservations`+w.String(), w.args...).Scan(&s.total); err != nil {
		return nil, l.db.formatError(start, "scan: count", err)
	}
	// The rows stream in as Next reads them, under the caller's ctx.
	if s.rows, err = tx.Query(ctx, `SELECT `+orderColumns+` FROM reservations`+w.String()+` ORDER BY id`, w.args...); err != nil {
		return nil, l.db.formatError(ctx, "scan", err)
	}
	return s, nil
}

// Total returns how many reservations the scan will read.
func (s *Scan) Total() int { return s.total }

// LastApplied returns the ledger's highest applied seq in the scan's snapshot.
func (s *Scan) LastApplied() uint64 { return s.lastApplied }

// Next advances to the next reservation, reporting false at the end or on an error
// (see Err).
func (s *Scan) Next() bool {
	if s.err != nil || s.done {
		return false
	}
	if !s.rows.Next() {
		s.done = true
		return false
	}
	s.res, s.seq, s.err = scanRow(s.rows)
	if s.err != nil {
		s.err = fmt.Errorf("postgres: scan: %w", s.err)
		s.rows.Close()
		return false
	}
	return true
}

// Reservation returns the current reservation.
func (s *Scan) Reservation() revguard.Reservation { return s.res }

// Seq returns the seq of the last event applied to the current reservation.
func (s *Scan) Seq() uint64 { return s.seq }

// Err returns the error that ended the scan, if any.
func (s *Scan) Err() error {
	if s.err != nil {
		return s.err
	}
	if err := s.rows.Err(); err != nil {
		return s.db.formatError(s.ctx, "scan", err)
	}
	return nil
}

// SKUHistory returns the SKU changes of sku ("" for every SKU) in the scan's snapshot,
// once Next has reported false.
func (s *Scan) SKUHistory(ctx context.Context, sku string) ([]SKUChange, error) {
	if s.tx == nil {
		return nil, fmt.Errorf("postgres: scan: closed")
	}
	if !s.done {
		return nil, fmt.Errorf("postgres: scan: SKUHistory before the reservations are read")
	}
	ctx, cancel := s.db.bound(ctx)
	defer cancel()
	return readHistory(ctx, s.db, s.tx, sku)
}

// Close ends the scan and releases its snapshot and connection. It is safe to call
// more than once.
func (s *Scan) Close() error {
	if s.tx == nil {
		return nil
	}
	s.rows.Close()
	err := s.tx.Rollback(context.WithoutCancel(s.ctx))
	s.tx = nil
	if err != nil {
		return fmt.Errorf("postgres: scan: close: %w", err)
	}
	return nil
}

// SKUChange is one EventSKUPut as the ledger keeps it in sku_history: the settings of
// SKU from Time until its next change. revguard verify checks against it that the
// units held and sold at any instant never exceed the stock in force then.
type SKUChange struct {
	SKU              string
	Seq              uint64
	Time             time.Time
	Stock            int64
	PerCustomerLimit int64
	HoldSeconds      int64
	OpensAt          time.Time // zero: open on creation
}

// SKUHistory returns the changes of sku ("" for every SKU), ordered by SKU then seq.
func (l *Ledger) SKUHistory(ctx context.Context, sku string) ([]SKUChange, error) {
	pool, err := l.db.acquirePool()
	if err != nil {
		return nil, err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	return readHistory(ctx, l.db, pool, sku)
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readHistory reads sku_history through q.
func readHistory(ctx context.Context, db *DB, q querier, sku string) ([]SKUChange, error) {
	var w where
	if sku != "" {
		w.add("sku =", sku)
	}
	rows, err := q.Query(ctx, `SELECT sku, seq, time, stock, per_customer_limit, hold_seconds, opens_at
		FROM sku_history`+w.String()+` ORDER BY sku, seq`, w.args...)
	if err != nil {
		return nil, db.formatError(ctx, "read sku history", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SKUChange, error) {
		var (
			c         SKUChange
			seq, t    int64
			opensNano *int64
		)
		err := row.Scan(&c.SKU, &seq, &t, &c.Stock, &c.PerCustomerLimit, &c.HoldSeconds, &opensNano)
		c.Seq, c.Time, c.OpensAt = uint64(seq), time.Unix(0, t).UTC(), fromNanos(opensNano)
		return c, err
	})
	if err != nil {
		return nil, db.formatError(ctx, "read sku history", err)
	}
	return out, nil
}
