package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/revenueguard/revguard"
)

var (
	_ revguard.ChangeLog    = (*ChangeLog)(nil)
	_ revguard.ChangeSeeder = (*ChangeLog)(nil)
	_ revguard.ChangeSyncer = (*ChangeLog)(nil)
)

// ChangeLog is the change log (revguard.ChangeLog) in a DB, beside the ledger it can
// be seeded from.
type ChangeLog struct {
	db *DB
}

// NewChangeLog returns the change log stored in db, which must be open.
func NewChangeLog(db *DB) *ChangeLog { return &ChangeLog{db: db} }

// LoadChangeState returns the journal seq, the last change's seq and every SKU's counts.
func (l *ChangeLog) LoadChangeState(ctx context.Context) (revguard.ChangeState, error) {
	r, err := l.db.reader()
	if err != nil {
		return revguard.ChangeState{}, err
	}
	tx, err := r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return revguard.ChangeState{}, storeErr("load change state", err)
	}
	defer tx.Rollback()
	var st revguard.ChangeState
	var js, ls int64
	if err := tx.QueryRowContext(ctx, `SELECT journal_seq, last_seq FROM change_meta WHERE id = 1`).Scan(&js, &ls); err != nil {
		return st, storeErr("load change state", err)
	}
	st.JournalSeq, st.LastSeq = uint64(js), uint64(ls)
	rows, err := tx.QueryContext(ctx, `SELECT sku, stock, held, sold, per_customer_limit, hold_seconds, opens_at FROM change_skus`)
	if err != nil {
		return st, storeErr("load change state", err)
	}
	defer rows.Close()
	st.SKUs = make(map[string]revguard.SKUCounts)
	for rows.Next() {
		var c revguard.SKUCounts
		var opens sql.NullInt64
		if err := rows.Scan(&c.SKU, &c.Stock, &c.Held, &c.Sold, &c.PerCustomerLimit, &c.HoldSeconds, &opens); err != nil {
			return st, storeErr("load change state", err)
		}
		c.OpensAt = fromNanos(opens)
		st.SKUs[c.SKU] = c
	}
	if err := rows.Err(); err != nil {
		return st, storeErr("load change state", err)
	}
	return st, nil
}

// AppendChanges appends changes, records journalSeq and the SKUs' counts, in one
// transaction. It returns once the transaction is committed: it survives a crash of
// the process, and one of the machine after SyncChanges. A batch whose journal seq the
// log has already reached changes nothing.
func (l *ChangeLog) AppendChanges(ctx context.Context, changes []revguard.Change, journalSeq uint64, skus []revguard.SKUCounts) error {
	if journalSeq > math.MaxInt64 {
		return fmt.Errorf("sqlite: append changes: journal seq %d out of range", journalSeq)
	}
	w, err := l.db.writer()
	if err != nil {
		return err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return storeErr("append changes: begin", err)
	}
	defer tx.Rollback()
	var js, ls int64
	if err := tx.QueryRowContext(ctx, `SELECT journal_seq, last_seq FROM change_meta WHERE id = 1`).Scan(&js, &ls); err != nil {
		return storeErr("append changes", err)
	}
	if uint64(js) >= journalSeq {
		return nil // a replay of events already turned into changes
	}
	if len(changes) > 0 && changes[0].Seq != uint64(ls)+1 {
		return fmt.Errorf("sqlite: append changes: seq %d after %d", changes[0].Seq, ls)
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO changes (seq, type, sku, time, body) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return storeErr("append changes", err)
	}
	defer ins.Close()
	last := ls
	for _, c := range changes {
		if _, err := ins.ExecContext(ctx, int64(c.Seq), string(c.Type), c.SKU, c.Time.UnixNano(), c.Body); err != nil {
			return fmt.Errorf("sqlite: append change %d: %w", c.Seq, err)
		}
		last = int64(c.Seq)
	}
	put, err := tx.PrepareContext(ctx, `INSERT INTO change_skus (sku, stock, held, sold, per_customer_limit, hold_seconds, opens_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET stock = excluded.stock, held = excluded.held,
		sold = excluded.sold, per_customer_limit = excluded.per_customer_limit, hold_seconds = excluded.hold_seconds,
		opens_at = excluded.opens_at`)
	if err != nil {
		return storeErr("append changes", err)
	}
	defer put.Close()
	for _, s := range skus {
		if _, err := put.ExecContext(ctx, s.SKU, s.Stock, s.Held, s.Sold, s.PerCustomerLimit, s.HoldSeconds, nanos(s.OpensAt)); err != nil {
			return fmt.Errorf("sqlite: append changes: counts of %s: %w", s.SKU, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE change_meta SET journal_seq = ?, last_seq = ? WHERE id = 1`, int64(journalSeq), last); err != nil {
		return storeErr("append changes", err)
	}
	if err := tx.Commit(); err != nil {
		return storeErr("append changes: commit", err)
	}
	return nil
}

// SyncChanges makes every batch appended so far durable (revguard.ChangeSyncer): one
// fsync of the WAL, which the ledger's Sync shares.
func (l *ChangeLog) SyncChanges(ctx context.Context) error {
	return l.db.syncWAL()
}

// ReadChanges returns up to max changes with seq > after, in order.
func (l *ChangeLog) ReadChanges(ctx context.Context, after uint64, max int) ([]revguard.Change, error) {
	if after > math.MaxInt64 {
		return nil, nil
	}
	r, err := l.db.reader()
	if err != nil {
		return nil, err
	}
	rows, err := r.QueryContext(ctx, `SELECT seq, type, sku, time, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`, int64(after), max)
	if err != nil {
		return nil, storeErr("read changes", err)
	}
	defer rows.Close()
	var out []revguard.Change
	for rows.Next() {
		var c revguard.Change
		var seq, t int64
		var typ string
		if err := rows.Scan(&seq, &typ, &c.SKU, &t, &c.Body); err != nil {
			return nil, storeErr("read changes", err)
		}
		c.Seq, c.Type, c.Time = uint64(seq), revguard.ChangeType(typ), time.Unix(0, t).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("read changes", err)
	}
	return out, nil
}

// SeedChanges sets the log's journal seq to the ledger's last applied event and the
// SKUs' counts to the ledger's, in one transaction (revguard.ChangeSeeder). It changes
// nothing once the log has followed the journal.
func (l *ChangeLog) SeedChanges(ctx context.Context) error {
	w, err := l.db.writer()
	if err != nil {
		return err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return storeErr("seed changes: begin", err)
	}
	defer tx.Rollback()
	var js, ls int64
	if err := tx.QueryRowContext(ctx, `SELECT journal_seq, last_seq FROM change_meta WHERE id = 1`).Scan(&js, &ls); err != nil {
		return storeErr("seed changes", err)
	}
	if js != 0 || ls != 0 {
		return nil
	}
	for _, q := range []string{
		`DELETE FROM change_skus`,
		`INSERT INTO change_skus (sku, stock, held, sold, per_customer_limit, hold_seconds, opens_at)
			SELECT s.id, s.stock,
				coalesce((SELECT sum(quantity) FROM reservations r WHERE r.sku = s.id AND r.status = 'held'), 0),
				coalesce((SELECT sum(quantity) FROM reservations r WHERE r.sku = s.id AND r.status = 'confirmed'), 0),
				s.per_customer_limit, s.hold_seconds, s.opens_at
			FROM skus s`,
		`UPDATE change_meta SET journal_seq = (SELECT last_applied FROM ledger_meta WHERE id = 1) WHERE id = 1`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return storeErr("seed changes", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return storeErr("seed changes: commit", err)
	}
	return l.db.syncWAL()
}

// PruneChanges deletes the changes that happened before `before` (the oldest first, up
// to the first that did not), and returns how many it deleted. An endpoint paused for
// longer than the retention misses them.
func (l *ChangeLog) PruneChanges(ctx context.Context, before time.Time) (int64, error) {
	w, err := l.db.writer()
	if err != nil {
		return 0, err
	}
	res, err := w.ExecContext(ctx, `DELETE FROM changes WHERE seq < coalesce(
			(SELECT seq FROM changes WHERE time >= ? ORDER BY seq LIMIT 1),
			(SELECT last_seq + 1 FROM change_meta WHERE id = 1))`, before.UnixNano())
	if err != nil {
		return 0, storeErr("prune changes", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
