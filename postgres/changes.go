package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/revenueguard/revguard"
)

var _ revguard.StreamChangeLog = (*ChangeLog)(nil)

// ChangeLog is the change log of the distributed mode (revguard.StreamChangeLog): the
// changes that a node turns the outbox streams into, for the event stream and the
// webhooks of every node.
type ChangeLog struct {
	db *DB
}

// NewChangeLog returns the change log stored in db, which must be open.
func NewChangeLog(db *DB) *ChangeLog { return &ChangeLog{db: db} }

// LoadStreamChangeState returns the last change's seq, the version, each shard's
// position and every SKU's counts, as of one snapshot.
func (l *ChangeLog) LoadStreamChangeState(ctx context.Context) (revguard.StreamChangeState, error) {
	st := revguard.StreamChangeState{SKUs: make(map[string]revguard.SKUCounts), Positions: make(map[int]string)}
	pool, err := l.db.acquirePool()
	if err != nil {
		return st, err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var last, version int64
		if err := tx.QueryRow(ctx, `SELECT last_seq, version FROM change_meta WHERE id = 1`).Scan(&last, &version); err != nil {
			return err
		}
		st.LastSeq, st.Version = uint64(last), uint64(version)
		rows, err := tx.Query(ctx, `SELECT shard, stream_id FROM change_positions`)
		if err != nil {
			return err
		}
		var shard int32
		var id string
		if _, err := pgx.ForEachRow(rows, []any{&shard, &id}, func() error {
			st.Positions[int(shard)] = id
			return nil
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT sku, stock, held, sold, per_customer_limit, hold_seconds, opens_at FROM change_skus`)
		if err != nil {
			return err
		}
		var c revguard.SKUCounts
		var opens *int64
		_, err = pgx.ForEachRow(rows, []any{&c.SKU, &c.Stock, &c.Held, &c.Sold, &c.PerCustomerLimit, &c.HoldSeconds, &opens}, func() error {
			c.OpensAt = fromNanos(opens)
			st.SKUs[c.SKU] = c
			return nil
		})
		return err
	})
	if err != nil {
		return st, l.db.formatError(ctx, "load change state", err)
	}
	return st, nil
}

// AppendStreamChanges appends changes, the shards' positions and the SKUs' counts in
// one transaction, if the version is still version (the change_meta row is locked
// while it checks), and bumps it; otherwise it fails with revguard.ErrChangeLogMoved.
func (l *ChangeLog) AppendStreamChanges(ctx context.Context, version uint64, changes []revguard.Change, positions map[int]string, skus []revguard.SKUCounts) error {
	pool, err := l.db.acquirePool()
	if err != nil {
		return err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var last, v int64
		if err := tx.QueryRow(ctx, `SELECT last_seq, version FROM change_meta WHERE id = 1 FOR UPDATE`).Scan(&last, &v); err != nil {
			return err
		}
		if uint64(v) != version {
			return revguard.ErrChangeLogMoved
		}
		if len(changes) > 0 && changes[0].Seq != uint64(last)+1 {
			return fmt.Errorf("seq %d after %d", changes[0].Seq, last)
		}
		rows := make([][]any, len(changes))
		for i, c := range changes {
			if c.Seq > math.MaxInt64 {
				return fmt.Errorf("seq %d out of range", c.Seq)
			}
			rows[i] = []any{int64(c.Seq), string(c.Type), c.SKU, c.Time.UnixNano(), c.Body}
			last = int64(c.Seq)
		}
		if len(rows) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"changes"}, []string{"seq", "type", "sku", "time", "body"}, pgx.CopyFromRows(rows)); err != nil {
				return err
			}
		}
		var b pgx.Batch
		for shard, id := range positions {
			b.Queue(`INSERT INTO change_positions (shard, stream_id) VALUES ($1, $2)
				ON CONFLICT (shard) DO UPDATE SET stream_id = excluded.stream_id`, int32(shard), id)
		}
		for _, s := range skus {
			var opens *int64
			if !s.OpensAt.IsZero() {
				n := s.OpensAt.UnixNano()
				opens = &n
			}
			b.Queue(`INSERT INTO change_skus (sku, stock, held, sold, per_customer_limit, hold_seconds, opens_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sku) DO UPDATE SET stock = excluded.stock,
				held = excluded.held, sold = excluded.sold, per_customer_limit = excluded.per_customer_limit,
				hold_seconds = excluded.hold_seconds, opens_at = excluded.opens_at`,
				s.SKU, s.Stock, s.Held, s.Sold, s.PerCustomerLimit, s.HoldSeconds, opens)
		}
		b.Queue(`UPDATE change_meta SET last_seq = $1, version = version + 1 WHERE id = 1`, last)
		return tx.SendBatch(ctx, &b).Close()
	})
	if errors.Is(err, revguard.ErrChangeLogMoved) {
		return err
	}
	if err != nil {
		return l.db.formatError(ctx, "append changes", err)
	}
	return nil
}

// ReadChanges returns up to max changes with seq > after, in order.
func (l *ChangeLog) ReadChanges(ctx context.Context, after uint64, max int) ([]revguard.Change, error) {
	if after >= math.MaxInt64 {
		return nil, nil
	}
	pool, err := l.db.acquirePool()
	if err != nil {
		return nil, err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT seq, type, sku, time, body FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2`, int64(after), max)
	if err != nil {
		return nil, l.db.formatError(ctx, "read changes", err)
	}
	var out []revguard.Change
	var c revguard.Change
	var seq, t int64
	var typ string
	_, err = pgx.ForEachRow(rows, []any{&seq, &typ, &c.SKU, &t, &c.Body}, func() error {
		c.Seq, c.Type, c.Time = uint64(seq), revguard.ChangeType(typ), time.Unix(0, t).UTC()
		out = append(out, c)
		c.Body = nil // the next row scans into a new slice
		return nil
	})
	if err != nil {
		return nil, l.db.formatError(ctx, "read changes", err)
	}
	return out, nil
}

// LastChange returns the seq of the newest change.
func (l *ChangeLog) LastChange(ctx context.Context) (uint64, error) {
	pool, err := l.db.acquirePool()
	if err != nil {
		return 0, err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	var last int64
	if err := pool.QueryRow(ctx, `SELECT last_seq FROM change_meta WHERE id = 1`).Scan(&last); err != nil {
		return 0, l.db.formatError(ctx, "read the last change", err)
	}
	return uint64(last), nil
}

// PruneChanges deletes the changes that happened before `before` (the oldest first, up
// to the first that did not), and returns how many it deleted. An endpoint paused for
// longer than the retention misses them.
func (l *ChangeLog) PruneChanges(ctx context.Context, before time.Time) (int64, error) {
	pool, err := l.db.acquirePool()
	if err != nil {
		return 0, err
	}
	ctx, cancel := l.db.bound(ctx)
	defer cancel()
	tag, err := pool.Exec(ctx, `DELETE FROM changes WHERE seq < coalesce(
			(SELECT seq FROM changes WHERE time >= $1 ORDER BY seq LIMIT 1),
			(SELECT last_seq + 1 FROM change_meta WHERE id = 1))`, before.UnixNano())
	if err != nil {
		return 0, l.db.formatError(ctx, "prune changes", err)
	}
	return tag.RowsAffected(), nil
}

// DefaultChangePoll is ChangeFeed's default Poll.
const DefaultChangePoll = 100 * time.Millisecond

var _ revguard.ChangeReader = (*ChangeFeed)(nil)

// ChangeFeed is what a node's event streams and webhook dispatcher read
// (revguard.ChangeReader): the change log, whichever node writes it, with the newest
// change's seq read every Poll, so that a wait ends at most about Poll after a change
// was appended on any node.
type ChangeFeed struct {
	Log    *ChangeLog
	Poll   time.Duration // 0 means DefaultChangePoll
	Logger *slog.Logger  // defaults to slog.Default()

	last revguard.SeqNotifier
}

// Run reads the newest change's seq every Poll until ctx is done.
func (f *ChangeFeed) Run(ctx context.Context) {
	t := time.NewTicker(cmp.Or(f.Poll, DefaultChangePoll))
	defer t.Stop()
	failing := false
	for {
		last, err := f.Log.LastChange(ctx)
		switch {
		case err == nil:
			f.last.Publish(last)
			failing = false
		case ctx.Err() != nil:
			return
		case !failing: // once per outage
			cmp.Or(f.Logger, slog.Default()).Error("change feed: read the last change", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Notify makes the feed's waiters see changes up to seq at once (the writer on this
// node calls it after each append).
func (f *ChangeFeed) Notify(seq uint64) { f.last.Publish(seq) }

// ReadChanges returns up to max changes with Seq > after, in order.
func (f *ChangeFeed) ReadChanges(ctx context.Context, after uint64, max int) ([]revguard.Change, error) {
	return f.Log.ReadChanges(ctx, after, max)
}

// LastChange returns the newest change's seq as last read.
func (f *ChangeFeed) LastChange() uint64 { return f.last.Load() }

// ReadLastChange reads the newest change's seq from the log, and lets the feed's
// waiters see it.
func (f *ChangeFeed) ReadLastChange(ctx context.Context) (uint64, error) {
	last, err := f.Log.LastChange(ctx)
	if err != nil {
		return 0, err
	}
	f.last.Publish(last)
	return f.last.Load(), nil
}

// WaitChanges blocks until a change with Seq > after is known, or ctx is done.
func (f *ChangeFeed) WaitChanges(ctx context.Context, after uint64) error {
	return f.last.Wait(ctx, after)
}
