package postgres

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of Lead's timings.
const (
	DefaultLeadRetry = 2 * time.Second // between two tries at the lock
	DefaultLeadCheck = 2 * time.Second // between two checks that the lock's connection lives
)

// Lead runs fn while this process holds the advisory lock named name in the DB's
// schema, so that of all the nodes that call Lead with one name, one at a time runs
// fn: the others try again every retry. The lock is a session lock on a connection
// of its own, outside the pool: PostgreSQL releases it when the connection ends, so a
// node whose process dies hands over within about retry, and one whose machine or
// network is lost within about 15 s (server-side TCP keepalives on that connection). fn's context
// ends when ctx does or when the connection fails a check (every check); Lead then
// waits for fn to return, and tries again. Two nodes can overlap for a moment (one
// whose connection broke without its knowing yet): what fn writes must be safe from
// two writers, as the change log's versioned appends are. Lead returns when ctx is
// done. Zero durations take the defaults.
func (db *DB) Lead(ctx context.Context, name string, retry, check time.Duration, logger *slog.Logger, fn func(ctx context.Context)) {
	retry, check = cmp.Or(retry, DefaultLeadRetry), cmp.Or(check, DefaultLeadCheck)
	logger = cmp.Or(logger, slog.Default())
	key := advisoryKey("lead "+name, db.Schema)
	failing := false
	for {
		held, err := db.lead(ctx, key, check, fn)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			logger.Warn("postgres: lead "+name, "err", err)
		case held:
			logger.Info("postgres: lead " + name + ": handed over")
		}
		failing = err != nil
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// lead tries once to take the lock, and runs fn while it holds it. It reports
// whether it held the lock.
func (db *DB) lead(ctx context.Context, key int64, check time.Duration, fn func(ctx context.Context)) (bool, error) {
	pool, err := db.acquirePool()
	if err != nil {
		return false, err
	}
	cfg := pool.Config().ConnConfig.Copy()
	// The server ends the session, and so frees the lock, within about 15 s of losing
	// the leader's machine or network (not only when its process dies): without
	// these, a silent peer keeps it for the system's default of over two hours.
	for k, v := range map[string]string{"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
		"tcp_keepalives_count": "3", "tcp_user_timeout": "15000"} {
		if cfg.RuntimeParams[k] == "" {
			cfg.RuntimeParams[k] = v
		}
	}
	cctx, cancel := db.bound(ctx)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return false, db.formatError(ctx, "connect", err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) // ends the session, and the lock with it
	var ok bool
	cctx, cancel = db.bound(ctx)
	err = conn.QueryRow(cctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok)
	cancel()
	if err != nil {
		return false, db.formatError(ctx, "try the lock", err)
	}
	if !ok {
		return false, nil // another node leads
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(fctx)
	}()
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-done:
			stop()
			return true, nil
		case <-t.C:
			cctx, cancel := db.bound(ctx)
			err := conn.Ping(cctx)
			cancel()
			if err != nil {
				stop()
				<-done
				return true, db.formatError(ctx, "the lock's connection", err)
			}
		case <-ctx.Done():
			stop()
			<-done
			return true, nil
		}
	}
}
