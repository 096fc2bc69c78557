package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/revenueguard/revguard"
)

// ApplyEvents writes a batch as its net effect, worked out in Go before any SQL runs
// (netBatch), in few statements:
//
//   - A reservation created in the batch is inserted once, already in its state at the
//     end of the batch: a hold confirmed, released or expired within the same batch
//     costs one insert, not an insert and an update.
//   - A reservation created earlier and changed in the batch gets one update, setting
//     the fields its changes set, as applying them one by one would.
//   - Inserts and updates go in multi-row statements of up to applyChunk rows, each
//     prepared once per DB: a statement's fixed cost (database/sql, the driver, the
//     VDBE program's start) was about a quarter of the CPU of a one-row insert.
//   - Those statements are OR FAIL: a multi-row statement under the default ABORT
//     keeps a statement journal (a copy of each page it changes, written to a temporary
//     file) to undo its own rows on a failure. The whole transaction is rolled back on
//     any failure anyway, so FAIL, which keeps no such journal, loses nothing.
//
// Inserts and updates touch disjoint rows, and SKU rows are independent of
// reservations, so their order within the transaction does not matter.

// applyChunk is the most rows one insert or update statement takes. Fewer rows per
// statement cost more fixed overhead; more make longer SQL texts for no measurable gain.
const applyChunk = 64

// resState is one reservation's row as a batch leaves it. For a reservation created
// earlier (an update), only status, seq and the fields marked set are written.
type resState struct {
	id, sku, customer string
	quantity          int64
	status            revguard.Status
	created, expires  int64
	confirmed         int64 // when hasConfirmed
	released          int64 // when hasReleased
	hasConfirmed      bool
	hasReleased       bool
	orderRef          string // "" for none; an update keeps an existing one
	seq               uint64 // the last event applied to the row
	first             *revguard.Event
}

// change applies a confirmed, released or expired event to r.
func (r *resState) change(ev *revguard.Event) {
	r.seq = ev.Seq
	switch ev.Type {
	case revguard.EventConfirmed:
		r.status, r.confirmed, r.hasConfirmed = revguard.StatusConfirmed, ev.Time.UnixNano(), true
		if r.orderRef == "" { // the first order reference sticks
			r.orderRef = ev.OrderRef
		}
	case revguard.EventReleased:
		r.status, r.released, r.hasReleased = revguard.StatusReleased, ev.Time.UnixNano(), true
	case revguard.EventExpired:
		r.status = revguard.StatusExpired
	}
}

// netBatch is the net effect of the events of one batch. Its buffers are reused from
// batch to batch.
type netBatch struct {
	inserts []resState
	updates []resState
	skus    []*revguard.Event // the last EventSKUPut of each SKU
	puts    []*revguard.Event // every EventSKUPut, in order: the SKUs' history
	byID    map[string]int    // reservation id: index in inserts, or ^index in updates
	bySKU   map[string]int    // SKU id: index in skus
}

// reset empties b for the next batch.
func (b *netBatch) reset() {
	b.inserts, b.updates, b.skus = b.inserts[:0], b.updates[:0], b.skus[:0]
	clear(b.puts)
	b.puts = b.puts[:0]
	if b.byID == nil {
		b.byID, b.bySKU = make(map[string]int), make(map[string]int)
	}
	clear(b.byID)
	clear(b.bySKU)
}

// add folds ev into b. It fails for an unknown event type, and for a reservation
// reserved twice in the batch, or changed before it was reserved: applied one by one,
// either would fail too.
func (b *netBatch) add(ev *revguard.Event) error {
	switch ev.Type {
	case revguard.EventSKUPut:
		b.puts = append(b.puts, ev)
		if i, ok := b.bySKU[ev.SKU]; ok {
			b.skus[i] = ev // a later put replaces every setting
		} else {
			b.bySKU[ev.SKU] = len(b.skus)
			b.skus = append(b.skus, ev)
		}
	case revguard.EventReserved:
		if _, ok := b.byID[ev.ReservationID]; ok {
			return fmt.Errorf("sqlite: apply event %d: reservation %q reserved twice, or changed before it was reserved", ev.Seq, ev.ReservationID)
		}
		b.byID[ev.ReservationID] = len(b.inserts)
		b.inserts = append(b.inserts, resState{id: ev.ReservationID, sku: ev.SKU, customer: ev.CustomerID,
			quantity: ev.Quantity, status: revguard.StatusHeld, created: ev.Time.UnixNano(),
			expires: ev.ExpiresAt.UnixNano(), seq: ev.Seq, first: ev})
	case revguard.EventConfirmed, revguard.EventReleased, revguard.EventExpired:
		i, ok := b.byID[ev.ReservationID]
		switch {
		case !ok:
			b.byID[ev.ReservationID] = ^len(b.updates)
			b.updates = append(b.updates, resState{id: ev.ReservationID, first: ev})
			b.updates[len(b.updates)-1].change(ev)
		case i >= 0:
			b.inserts[i].change(ev)
		default:
			b.updates[^i].change(ev)
		}
	default:
		return fmt.Errorf("sqlite: apply event %d: unknown type %d", ev.Seq, ev.Type)
	}
	return nil
}

// The multi-row statements: head, then rows copies of tuple separated by commas, then
// tail.
const (
	insertHead = `INSERT OR FAIL INTO reservations
		(id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq) VALUES `
	insertTuple = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	// A NULL column of v leaves the row's value as it is; order_ref keeps the first
	// reference a reservation got.
	updateHead = `UPDATE OR FAIL reservations SET status = v.column2,
		confirmed_at = coalesce(v.column3, confirmed_at), released_at = coalesce(v.column4, released_at),
		order_ref = coalesce(order_ref, v.column5), seq = v.column6
		FROM (VALUES `
	updateTuple = `(?, ?, ?, ?, ?, ?)`
	updateTail  = `) AS v WHERE reservations.id = v.column1`
)

// rowsStmt is the text of a multi-row statement.
type rowsStmt struct{ head, tuple, tail string }

// stmtKey names one prepared statement of the writer (DB.prepare, DB.stmt).
type stmtKey struct {
	rowsStmt
	rows int
}

// text returns the SQL of k.
func (k stmtKey) text() string {
	var b strings.Builder
	b.WriteString(k.head)
	for i := range k.rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k.tuple)
	}
	b.WriteString(k.tail)
	return b.String()
}

// ledgerStmts lists the statements of ApplyEvents, which DB.Open prepares.
func ledgerStmts() []stmtKey {
	keys := []stmtKey{{rowsStmt{head: putSKU}, 0}, {rowsStmt{head: putSKUHistory}, 0}}
	for k := applyChunk; k >= 1; k /= 2 {
		keys = append(keys, stmtKey{rowsStmt{insertHead, insertTuple, ""}, k},
			stmtKey{rowsStmt{updateHead, updateTuple, updateTail}, k})
	}
	return keys
}

// chunkRows returns how many of n remaining rows the next statement takes: applyChunk
// while there are that many, then powers of two, so that a batch uses at most a handful
// of distinct statements and a few more executions than the minimum.
func chunkRows(n int) int {
	if n >= applyChunk {
		return applyChunk
	}
	k := 1
	for k*2 <= n {
		k *= 2
	}
	return k
}

// applier runs the statements of one ApplyEvents transaction.
type applier struct {
	ctx  context.Context // without cancellation: see ApplyEvents
	db   *DB
	tx   *sql.Tx
	args []any
}

// execRows runs s over rows in chunks, appending each row's arguments with add, and
// returns the number of rows changed.
func (a *applier) execRows(s rowsStmt, rows []resState, add func([]any, *resState) []any) (int64, error) {
	var changed int64
	for len(rows) > 0 {
		k := chunkRows(len(rows))
		st, err := a.db.stmt(a.ctx, a.tx, stmtKey{s, k})
		if err != nil {
			return changed, err
		}
		a.args = a.args[:0]
		for i := range rows[:k] {
			a.args = add(a.args, &rows[i])
		}
		res, err := st.ExecContext(a.ctx, a.args...)
		if err != nil {
			return changed, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return changed, err
		}
		changed += n
		rows = rows[k:]
	}
	clear(a.args) // drop references to this batch's strings
	return changed, nil
}

// insertArgs appends the arguments of insertTuple for r.
func insertArgs(args []any, r *resState) []any {
	return append(args, r.id, r.sku, r.customer, r.quantity, string(r.status), r.created, r.expires,
		nullInt(r.confirmed, r.hasConfirmed), nullInt(r.released, r.hasReleased), nullString(r.orderRef), int64(r.seq))
}

// updateArgs appends the arguments of updateTuple for r.
func updateArgs(args []any, r *resState) []any {
	return append(args, r.id, string(r.status), nullInt(r.confirmed, r.hasConfirmed),
		nullInt(r.released, r.hasReleased), nullString(r.orderRef), int64(r.seq))
}

// insert writes the reservations created in the batch. A duplicate id fails with an
// error naming the reservation.
func (a *applier) insert(rows []resState) error {
	if _, err := a.execRows(rowsStmt{insertHead, insertTuple, ""}, rows, insertArgs); err != nil {
		if isConstraint(err) {
			// The rows that went in before the failure carry this batch's seqs; the
			// duplicate is the row that was there before.
			for i := range rows {
				if seq, ok, _ := a.rowSeq(rows[i].id); ok && seq != rows[i].seq {
					return fmt.Errorf("sqlite: apply event %d: reservation %q already in the ledger: %w", rows[i].first.Seq, rows[i].id, err)
				}
			}
		}
		return storeErr("apply events: insert reservations", err)
	}
	return nil
}

// update writes the changes of reservations created before the batch. A reservation
// that is not in the ledger fails the batch.
func (a *applier) update(rows []resState) error {
	n, err := a.execRows(rowsStmt{updateHead, updateTuple, updateTail}, rows, updateArgs)
	if err != nil {
		return storeErr("apply events: update reservations", err)
	}
	if n == int64(len(rows)) {
		return nil
	}
	for i := range rows {
		_, ok, err := a.rowSeq(rows[i].id)
		if err != nil {
			return storeErr("apply events", err)
		}
		if !ok {
			ev := rows[i].first
			return fmt.Errorf("sqlite: apply event %d (%s): reservation %q is not in the ledger", ev.Seq, ev.Type, ev.ReservationID)
		}
	}
	return fmt.Errorf("sqlite: apply events: updated %d reservations, want %d", n, len(rows))
}

// rowSeq returns the seq of reservation id's row, and whether there is one (for error
// messages).
func (a *applier) rowSeq(id string) (uint64, bool, error) {
	var seq int64
	err := a.tx.QueryRowContext(a.ctx, `SELECT seq FROM reservations WHERE id = ?`, id).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return uint64(seq), err == nil, err
}

// putSKUs runs head, putSKU or putSKUHistory, for each put of evs: the last settings of
// each SKU put in the batch, or every put in the SKUs' history.
func (a *applier) putSKUs(head string, evs []*revguard.Event) error {
	if len(evs) == 0 {
		return nil
	}
	st, err := a.db.stmt(a.ctx, a.tx, stmtKey{rowsStmt{head: head}, 0})
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if _, err := st.ExecContext(a.ctx, ev.SKU, ev.Stock, ev.PerCustomerLimit, ev.HoldSeconds,
			nanos(ev.OpensAt), ev.Time.UnixNano(), int64(ev.Seq)); err != nil {
			return fmt.Errorf("sqlite: apply event %d (%s): %w", ev.Seq, ev.Type, err)
		}
	}
	return nil
}

// nullInt returns n, or nil (SQL NULL) when !ok.
func nullInt(n int64, ok bool) any {
	if !ok {
		return nil
	}
	return n
}

// nullString returns s, or nil (SQL NULL) for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
