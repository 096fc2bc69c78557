package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// sessionCommitter writes the sessions of concurrent CreateSession calls in shared
// transactions (group commit): while one transaction commits and its WAL is synced,
// the next calls queue, and the next transaction takes all of them, in multi-row
// inserts, with one fsync. A crowd logging in before a drop then costs one fsync per
// group rather than one per session, and each caller still returns only once its own
// row is durable.
//
// It has no goroutine of its own. A caller that finds no commit under way commits its
// session itself, so that a lone login waits for no other goroutine; callers arriving
// meanwhile queue, and when the commit ends its caller hands the queue to the first
// of them, which commits the whole queue on its own goroutine (leader and followers).
type sessionCommitter struct {
	db *DB

	// mu guards the fields below and each queued request's promote channel; it is
	// never held during a commit.
	mu      sync.Mutex
	queue   []*sessionReq // waiting for the next commit
	leading bool          // a caller is committing, or was told to (promote)
	closed  bool

	groups atomic.Int64 // transactions committed (tests)
}

// sessionReq is one session waiting to be written.
type sessionReq struct {
	hash             [32]byte
	customer         string
	created, expires int64 // unix nanoseconds

	err     error         // the outcome, set before done is closed
	done    chan struct{} // closed once the row is durable or err is set
	promote chan struct{} // closed when this request's caller must commit the queue
}

// maxSessionGroup bounds the sessions of one transaction, so that a flood of logins
// holds the writer (which the ledger shares) for a few milliseconds at a time.
const maxSessionGroup = 1024

// Statement of the session inserts: see rowsStmt. OR FAIL, as in apply.go: a failed
// group is rolled back whole.
const (
	sessionHead  = `INSERT OR FAIL INTO sessions (token_hash, customer_id, created_at, expires_at) VALUES `
	sessionTuple = `(?, ?, ?, ?)`
)

// errClosed is the error of a session created after DB.Close.
var errClosed = errors.New("sqlite: database closed")

// sessionStmts lists the statements of the committer, which DB.Open prepares.
func sessionStmts() []stmtKey {
	var keys []stmtKey
	for k := applyChunk; k >= 1; k /= 2 {
		keys = append(keys, stmtKey{rowsStmt{sessionHead, sessionTuple, ""}, k})
	}
	return keys
}

// add writes r and returns once it is durable, or fails. When ctx ends first, add
// returns ctx.Err(), at the latest after the one commit it may owe the queue; r's row
// may still be written, but its token is never handed out, and it expires.
func (c *sessionCommitter) add(ctx context.Context, r *sessionReq) error {
	r.done, r.promote = make(chan struct{}), make(chan struct{})
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosed
	}
	if !c.leading {
		c.leading = true
		c.mu.Unlock()
		c.lead(r)
		return r.err
	}
	c.queue = append(c.queue, r)
	c.mu.Unlock()

	select {
	case <-r.done:
		return r.err
	case <-r.promote:
		c.lead(r)
		return r.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if i := slices.Index(c.queue, r); i >= 0 { // not taken: leave
		c.queue = slices.Delete(c.queue, i, i+1)
		c.mu.Unlock()
		return ctx.Err()
	}
	c.mu.Unlock()
	select {
	case <-r.done: // taken by a commit under way: nothing owed
	case <-r.promote: // promoted: the queue waits for this caller
		c.lead(r)
	default:
	}
	return ctx.Err()
}

// lead commits first and the queue, up to maxSessionGroup in all, then tells each
// caller, and hands the rest of the queue to its first caller, or ends the lead.
func (c *sessionCommitter) lead(first *sessionReq) {
	c.mu.Lock()
	n := min(len(c.queue), maxSessionGroup-1)
	group := append(make([]*sessionReq, 0, n+1), first)
	group = append(group, c.queue[:n]...)
	c.queue = slices.Delete(c.queue, 0, n)
	c.mu.Unlock()

	err := c.commit(group)
	for _, r := range group {
		r.err = err
		close(r.done)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.leading = false
		return
	}
	next := c.queue[0]
	c.queue = slices.Delete(c.queue, 0, 1)
	close(next.promote)
}

// commit writes group in one transaction and makes it durable.
func (c *sessionCommitter) commit(group []*sessionReq) error {
	w, err := c.db.writer()
	if err != nil {
		return err
	}
	// No cancellation: the sessions of callers that wait are written whatever the
	// context of the one that commits them. busy_timeout bounds the wait for locks.
	ctx := context.Background()
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	args := make([]any, 0, 4*min(len(group), applyChunk))
	for rows := group; len(rows) > 0; {
		k := chunkRows(len(rows))
		st, err := c.db.stmt(ctx, tx, stmtKey{rowsStmt{sessionHead, sessionTuple, ""}, k})
		if err != nil {
			return err
		}
		args = args[:0]
		for _, r := range rows[:k] {
			args = append(args, r.hash[:], r.customer, r.created, r.expires)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		rows = rows[k:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	c.groups.Add(1)
	return c.db.syncWAL()
}

// close makes later calls of add fail. Commits under way end on their own (on a
// closed DB, with an error).
func (c *sessionCommitter) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}
