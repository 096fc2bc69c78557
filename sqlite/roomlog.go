package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/revenueguard/revguard"
)

var _ revguard.RoomLog = (*RoomLog)(nil)

// RoomLog is the waiting rooms' audit log (revguard.RoomLog) in the table room_log of
// a DB. Callers batch their records (the embedded waiting room commits in groups); each
// append is one transaction, durable (the WAL synced) before it returns.
type RoomLog struct {
	db *DB
}

// NewRoomLog returns the room log stored in db, which must be open.
func NewRoomLog(db *DB) *RoomLog { return &RoomLog{db: db} }

const roomInsert = `INSERT INTO room_log (sku, type, time, customer_id, ticket, until, seed,
	pre_queue_seconds, admit_per_second, admission_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// AppendRoomRecords implements revguard.RoomLog.
func (l *RoomLog) AppendRoomRecords(ctx context.Context, recs []revguard.RoomRecord) error {
	if len(recs) == 0 {
		return nil
	}
	w, err := l.db.writer()
	if err != nil {
		return err
	}
	// No cancellation: the records of every caller of the batch are written.
	ctx = context.WithoutCancel(ctx)
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return storeErr("room log: begin", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, roomInsert)
	if err != nil {
		return storeErr("room log: prepare", err)
	}
	defer st.Close()
	for _, r := range recs {
		var settings [3]any
		if r.Type == revguard.RoomPut {
			settings = [3]any{r.Settings.PreQueueSeconds, r.Settings.AdmitPerSecond, r.Settings.AdmissionSeconds}
		}
		if _, err := st.ExecContext(ctx, r.SKU, int64(r.Type), r.Time.UnixNano(), nullString(r.CustomerID),
			r.Ticket, nanos(r.Until), r.Seed, settings[0], settings[1], settings[2]); err != nil {
			return storeErr(fmt.Sprintf("room log: insert %s of %s", r.Type, r.SKU), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return storeErr("room log: commit", err)
	}
	return l.db.syncWAL()
}

// ReadRoomRecords implements revguard.RoomLog.
func (l *RoomLog) ReadRoomRecords(ctx context.Context, sku string, fn func(revguard.RoomRecord) error) error {
	rd, err := l.db.reader()
	if err != nil {
		return err
	}
	q := `SELECT seq, sku, type, time, customer_id, ticket, until, seed,
		pre_queue_seconds, admit_per_second, admission_seconds FROM room_log`
	var args []any
	if sku != "" {
		q += ` WHERE sku = ?`
		args = append(args, sku)
	}
	rows, err := rd.QueryContext(ctx, q+` ORDER BY seq`, args...)
	if err != nil {
		return storeErr("room log: read", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r                revguard.RoomRecord
			typ, at          int64
			customer         sql.NullString
			ticket           sql.NullInt64
			until            sql.NullInt64
			pre, rate, admit sql.NullInt64
		)
		if err := rows.Scan(&r.Seq, &r.SKU, &typ, &at, &customer, &ticket, &until, &r.Seed, &pre, &rate, &admit); err != nil {
			return storeErr("room log: scan", err)
		}
		r.Type = revguard.RoomRecordType(typ)
		r.Time = fromNanos(sql.NullInt64{Int64: at, Valid: true})
		r.CustomerID, r.Ticket, r.Until = customer.String, ticket.Int64, fromNanos(until)
		r.Settings = revguard.RoomSettings{PreQueueSeconds: pre.Int64, AdmitPerSecond: rate.Int64, AdmissionSeconds: admit.Int64}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return storeErr("room log: read", err)
	}
	return nil
}
