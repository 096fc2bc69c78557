package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/revenueguard/revguard"
)

// RoomLog is the waiting rooms' audit log in the ledger (distributed mode): a
// permanent copy of the rooms' Redis streams. Records keep the Seq of their stream
// entry; copying a record twice, from any number of nodes, stores it once.
type RoomLog struct {
	db *DB
}

// NewRoomLog returns the room log stored in db, which must be open.
func NewRoomLog(db *DB) *RoomLog { return &RoomLog{db: db} }

// CopyRoomRecords stores recs, each once by its SKU and Seq, in one transaction.
func (l *RoomLog) CopyRoomRecords(ctx context.Context, recs []revguard.RoomRecord) error {
	if len(recs) == 0 {
		return nil
	}
	pool, err := l.db.acquirePool()
	if err != nil {
		return err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	var b pgx.Batch
	for _, r := range recs {
		var customer *string
		if r.CustomerID != "" {
			customer = &r.CustomerID
		}
		var until *int64
		if !r.Until.IsZero() {
			u := r.Until.UnixNano()
			until = &u
		}
		var settings [3]*int64
		if r.Type == revguard.RoomPut {
			s := r.Settings
			settings = [3]*int64{&s.PreQueueSeconds, &s.AdmitPerSecond, &s.AdmissionSeconds}
		}
		b.Queue(`INSERT INTO room_log (sku, seq, type, time, customer_id, ticket, until, seed,
			pre_queue_seconds, admit_per_second, admission_seconds)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (sku, seq) DO NOTHING`,
			r.SKU, r.Seq, int16(r.Type), r.Time.UnixNano(), customer, r.Ticket, until, r.Seed,
			settings[0], settings[1], settings[2])
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &b).Close() })
	if err != nil {
		return l.db.formatError(ctx, "copy room records", err)
	}
	return nil
}

// LastSeq returns the Seq of the SKU's last record copied, 0 for none.
func (l *RoomLog) LastSeq(ctx context.Context, sku string) (int64, error) {
	pool, err := l.db.acquirePool()
	if err != nil {
		return 0, err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	var seq int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM room_log WHERE sku = $1`, sku).Scan(&seq); err != nil {
		return 0, l.db.formatError(ctx, "read the room log", err)
	}
	return seq, nil
}

// ReadRoomRecords calls fn with every record of sku ("" for every SKU, one after the
// other in SKU order), in order.
func (l *RoomLog) ReadRoomRecords(ctx context.Context, sku string, fn func(revguard.RoomRecord) error) error {
	return l.read(ctx, sku, 0, 0, fn)
}

// ReadRoomRecordsBetween calls fn with the records of sku whose Seq is above after and,
// unless before is 0, below before, in order.
func (l *RoomLog) ReadRoomRecordsBetween(ctx context.Context, sku string, after, before int64, fn func(revguard.RoomRecord) error) error {
	return l.read(ctx, sku, after, before, fn)
}

func (l *RoomLog) read(ctx context.Context, sku string, after, before int64, fn func(revguard.RoomRecord) error) error {
	pool, err := l.db.acquirePool()
	if err != nil {
		return err
	}
	q := `SELECT sku, seq, type, time, customer_id, ticket, until, seed, pre_queue_seconds,
		admit_per_second, admission_seconds FROM room_log WHERE seq > $1`
	args := []any{after}
	if before > 0 {
		q += ` AND seq < $2`
		args = append(args, before)
	}
	if sku != "" {
		args = append(args, sku)
		q += fmt.Sprintf(` AND sku = $%d`, len(args))
	}
	rows, err := pool.Query(ctx, q+` ORDER BY sku, seq`, args...)
	if err != nil {
		return l.db.formatError(ctx, "read the room log", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r                revguard.RoomRecord
			typ              int16
			at               int64
			customer         *string
			ticket, until    *int64
			pre, rate, admit *int64
		)
		if err := rows.Scan(&r.SKU, &r.Seq, &typ, &at, &customer, &ticket, &until, &r.Seed, &pre, &rate, &admit); err != nil {
			return l.db.formatError(ctx, "read the room log", err)
		}
		r.Type, r.Time, r.Until = revguard.RoomRecordType(typ), time.Unix(0, at).UTC(), fromNanos(until)
		deref := func(p *int64) int64 {
			if p == nil {
				return 0
			}
			return *p
		}
		if customer != nil {
			r.CustomerID = *customer
		}
		r.Ticket = deref(ticket)
		r.Settings = revguard.RoomSettings{PreQueueSeconds: deref(pre), AdmitPerSecond: deref(rate), AdmissionSeconds: deref(admit)}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return l.db.formatError(ctx, "read the room log", err)
	}
	return nil
}
