package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
)

// ScanFilter selects the reservations of a Scan. Empty fields match everything.
type ScanFilter struct {
	SKU   string
	Since time.Time // only reservations created at or after Since

	// StockHistory also reads the stock history of the SKUs (of SKU, when set; from
	// the beginning, whatever Since) from the same snapshot: see Scan.StockHistory.
	StockHistory bool
}

// Scan reads every reservation matching a filter, in id order, from one consistent
// snapshot of the ledger: a read transaction that a concurrent writer (in this process
// or a running server) neither blocks nor changes. It is what revguard export and verify
// read. Close it when done: it holds the snapshot open.
//
//	s, err := ledger.Scan(ctx, f)
//	defer s.Close()
//	for s.Next() { use(s.Reservation()) }
//	err = s.Err()
type Scan struct {
	tx          *sql.Tx
	rows        *sql.Rows
	total       int
	lastApplied uint64
	history     []revguard.StockChange
	res         revguard.Reservation
	seq         uint64
	err         error
}

// Scan starts a scan of the reservations matching f.
func (l *Ledger) Scan(ctx context.Context, f ScanFilter) (*Scan, error) {
	r, err := l.db.reader()
	if err != nil {
		return nil, err
	}
	tx, err := r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, storeErr("scan: begin", err)
	}
	s := &Scan{tx: tx}
	// The first read fixes the snapshot: the count, the seq and the rows below all
	// see the same committed state.
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT last_applied FROM ledger_meta WHERE id = 1`).Scan(&last); err != nil {
		tx.Rollback()
		return nil, storeErr("scan: read last applied", err)
	}
	s.lastApplied = uint64(last)
	if f.StockHistory {
		if s.history, err = readStockHistory(ctx, tx, f.SKU); err != nil {
			tx.Rollback()
			return nil, err
		}
	}

	var (
		where []string
		args  []any
	)
	if f.SKU != "" {
		where, args = append(where, "sku = ?"), append(args, f.SKU)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "created_at >= ?"), append(args, f.Since.UnixNano())
	}
	cond := ""
	if len(where) > 0 {
		cond = ` WHERE ` + strings.Join(where, " AND ")
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM reservations`+cond, args...).Scan(&s.total); err != nil {
		tx.Rollback()
		return nil, storeErr("scan: count", err)
	}
	s.rows, err = tx.QueryContext(ctx, `SELECT `+orderColumns+` FROM reservations`+cond+` ORDER BY id`, args...)
	if err != nil {
		tx.Rollback()
		return nil, storeErr("scan", err)
	}
	return s, nil
}

// readStockHistory reads every put of sku (of every SKU when sku is ""), in seq order
// for each SKU.
func readStockHistory(ctx context.Context, tx *sql.Tx, sku string) ([]revguard.StockChange, error) {
	q, args := `SELECT sku, time, stock FROM sku_history ORDER BY sku, seq`, []any(nil)
	if sku != "" {
		q, args = `SELECT sku, time, stock FROM sku_history WHERE sku = ? ORDER BY seq`, []any{sku}
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, storeErr("scan: stock history", err)
	}
	defer rows.Close()
	var out []revguard.StockChange
	for rows.Next() {
		var c revguard.StockChange
		var at int64
		if err := rows.Scan(&c.SKU, &at, &c.Stock); err != nil {
			return nil, storeErr("scan: stock history", err)
		}
		c.Time = time.Unix(0, at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("scan: stock history", err)
	}
	return out, nil
}

// StockHistory returns, when the scan's filter asked for it, every stock setting of
// the SKUs from the scan's snapshot: each put's time and stock, in the order they were
// applied for each SKU, as revguard.CheckHeldWithinStock takes them.
func (s *Scan) StockHistory() []revguard.StockChange { return s.history }

// Total returns how many reservations the scan will read.
func (s *Scan) Total() int { return s.total }

// LastApplied returns the ledger's last applied seq in the scan's snapshot.
func (s *Scan) LastApplied() uint64 { return s.lastApplied }

// Next advances to the next reservation, reporting false at the end or on an error
// (see Err).
func (s *Scan) Next() bool {
	if s.err != nil || !s.rows.Next() {
		return false
	}
	s.res, s.seq, s.err = scanRow(s.rows)
	if s.err != nil {
		s.err = storeErr("scan", s.err)
		return false
	}
	return true
}

// Reservation returns the current reservation.
func (s *Scan) Reservation() revguard.Reservation { return s.res }

// Seq returns the seq of the last event applied to the current reservation: a row with
// Seq <= an engine's applied seq shows that reservation as of the engine's state.
func (s *Scan) Seq() uint64 { return s.seq }

// Err returns the error that ended the scan, if any.
func (s *Scan) Err() error {
	if s.err != nil {
		return s.err
	}
	if err := s.rows.Err(); err != nil {
		return storeErr("scan", err)
	}
	return nil
}

// Close ends the scan and releases its snapshot. It is safe to call more than once.
func (s *Scan) Close() error {
	if s.tx == nil {
		return nil
	}
	s.rows.Close()
	err := s.tx.Rollback()
	s.tx = nil
	if err != nil {
		return storeErr("scan: close", err)
	}
	return nil
}
