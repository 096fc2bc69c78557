package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/cursor"
)

var _ revguard.Ledger = (*Ledger)(nil)

// Ledger is the permanent order history (revguard.Ledger) in a DB: one row per
// reservation in its latest state, the SKUs' settings and their history. Any number of
// Ledgers, in any number of processes, may apply events to the same DB at once.
//
// Unlike the SQLite ledger, which follows one journal in order, this one applies each
// event to the rows it changes only when its seq is higher than the row's (see
// ApplyEvents): batches may repeat, overlap and arrive in any order.
type Ledger struct {
	db *DB

	// pool of netBatch buffers, reused from batch to batch by concurrent ApplyEvents.
	batches sync.Pool
}

// NewLedger returns the ledger stored in db, which must be open.
func NewLedger(db *DB) *Ledger { return &Ledger{db: db} }

// LastApplied returns the highest seq of any event applied, 0 for none. For a single
// writer that applies events in order, as the embedded mode's LedgerWriter does, every
// event up to it is in the ledger.
func (l *Ledger) LastApplied(ctx context.Context) (uint64, error) {
	pool, err := l.db.acquirePool()
	if err != nil {
		return 0, err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	var seq int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(last_applied), 0) FROM ledger_streams`).Scan(&seq); err != nil {
		return 0, l.db.formatError(ctx, "read last applied", err)
	}
	return uint64(seq), nil
}

// orderColumns are the columns scanRow reads, in order.
const orderColumns = `id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq`

// scanRow reads one reservation row selected with orderColumns, and the seq of the last
// event applied to it.
func scanRow(row pgx.Row) (revguard.Reservation, uint64, error) {
	var (
		r                     revguard.Reservation
		status                string
		created, expires, seq int64
		confirmed, released   *int64
		ref                   *string
	)
	if err := row.Scan(&r.ID, &r.SKU, &r.CustomerID, &r.Quantity, &status, &created, &expires,
		&confirmed, &released, &ref, &seq); err != nil {
		return r, 0, err
	}
	r.Status = revguard.Status(status)
	r.CreatedAt = time.Unix(0, created).UTC()
	r.ExpiresAt = time.Unix(0, expires).UTC()
	r.ConfirmedAt = fromNanos(confirmed)
	r.ReleasedAt = fromNanos(released)
	if ref != nil {
		r.OrderRef = *ref
	}
	return r, uint64(seq), nil
}

// FindReservation returns reservation id as the ledger holds it, or fails with
// CodeReservationNotFound.
func (l *Ledger) FindReservation(ctx context.Context, id string) (revguard.Reservation, error) {
	pool, err := l.db.acquirePool()
	if err != nil {
		return revguard.Reservation{}, err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	res, _, err := scanRow(pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM reservations WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeReservationNotFound, "no reservation %q", id)
	}
	if err != nil {
		return revguard.Reservation{}, l.db.formatError(ctx, fmt.Sprintf("find reservation %q", id), err)
	}
	return res, nil
}

// FindOrders returns one page of reservations matching f, in id order (ascending, or
// descending with f.NewestFirst). It fails with CodeInvalidRequest for a limit out of
// range, an unknown status, or a cursor that is not the next_cursor of the same query.
// The filters on SKU and on customer each follow an index in id order.
func (l *Ledger) FindOrders(ctx context.Context, f revguard.OrderFilter) (revguard.OrderPage, error) {
	pg, err := cursor.Parse(l.db.cursorKey, f)
	if err != nil {
		return revguard.OrderPage{}, err
	}
	pool, err := l.db.acquirePool()
	if err != nil {
		return revguard.OrderPage{}, err
	}
	var w where
	if f.SKU != "" {
		w.add("sku =", f.SKU)
	}
	if f.CustomerID != "" {
		w.add("customer_id =", f.CustomerID)
	}
	if f.Status != "" {
		w.add("status =", string(f.Status))
	}
	order := "ASC"
	if f.NewestFirst {
		order = "DESC"
	}
	if f.Cursor != "" {
		if f.NewestFirst {
			w.add("id <", pg.After)
		} else {
			w.add("id >", pg.After)
		}
	}
	// One more row than the page tells whether a next page exists.
	q := `SELECT ` + orderColumns + ` FROM reservations` + w.String() + ` ORDER BY id ` + order +
		` LIMIT ` + strconv.Itoa(pg.Limit+1)

	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	rows, err := pool.Query(ctx, q, w.args...)
	if err != nil {
		return revguard.OrderPage{}, l.db.formatError(ctx, "find orders", err)
	}
	defer rows.Close()
	page := revguard.OrderPage{Items: make([]revguard.Reservation, 0, min(pg.Limit, 64))}
	more := false
	for rows.Next() {
		if len(page.Items) == pg.Limit {
			more = true
			break
		}
		res, _, err := scanRow(rows)
		if err != nil {
			return revguard.OrderPage{}, l.db.formatError(ctx, "find orders: scan", err)
		}
		page.Items = append(page.Items, res)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return revguard.OrderPage{}, l.db.formatError(ctx, "find orders", err)
	}
	if more {
		page.NextCursor = cursor.Encode(l.db.cursorKey, f, page.Items[len(page.Items)-1].ID)
	}
	return page, nil
}

// where builds the WHERE clause of a query, numbering its parameters.
type where struct {
	conds []string
	args  []any
}

// add appends the condition "cond $n" with arg as parameter n.
func (w *where) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.conds = append(w.conds, cond+" $"+strconv.Itoa(len(w.args)))
}

// String returns the clause, with a leading space, or "" when there is no condition.
func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}
