package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

func mustOpen(tb testing.TB, now func() time.Time) *DB {
	tb.Helper()
	db := NewDB(filepath.Join(tb.TempDir(), "revguard.db"))
	db.Now = now
	if err := db.Open(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func countSessions(tb testing.TB, db *DB) int {
	tb.Helper()
	var n int
	if err := db.rdb.QueryRowContext(tb.Context(), `SELECT count(*) FROM sessions`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestSessions_StoredAsHash checks that the file holds the token's SHA-256 and never
// the token itself.
func TestSessions_StoredAsHash(t *testing.T) {
	db := mustOpen(t, time.Now)
	s := NewSessions(db)
	tok, _, err := s.CreateSession(t.Context(), "c-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.rdb.QueryContext(t.Context(), `SELECT * FROM sessions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	want := revguard.HashSessionToken(tok)
	found := false
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			var b []byte
			switch v := v.(type) {
			case []byte:
				b = v
			case string:
				b = []byte(v)
			}
			if bytes.Contains(b, []byte(tok)) {
				t.Fatalf("column %s holds the token in clear", cols[i])
			}
			if cols[i] == "token_hash" && bytes.Equal(b, want[:]) {
				found = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatal("no row holds the token's SHA-256")
	}
}

func TestSessions_RunPurge(t *testing.T) {
	var off time.Duration
	base := time.Now()
	var clock = func() time.Time { return base.Add(off) }
	db := mustOpen(t, clock)
	s := NewSessions(db)
	for range 3 {
		if _, _, err := s.CreateSession(t.Context(), "a", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.CreateSession(t.Context(), "b", time.Hour); err != nil {
		t.Fatal(err)
	}
	off = 2 * time.Minute // before RunPurge starts: no race on off

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.RunPurge(ctx, time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for countSessions(t, db) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("RunPurge left %d sessions, want 1", countSessions(t, db))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunPurge = %v, want nil after cancel", err)
	}
}

// holdWriter takes the writer's only connection, so that commits wait, until the
// returned func gives it back.
func holdWriter(tb testing.TB, db *DB) (release func()) {
	tb.Helper()
	conn, err := db.wdb.Conn(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { conn.Close() }) }
	tb.Cleanup(release)
	return release
}

// waitQueued waits until n sessions wait in the committer's queue.
func waitQueued(tb testing.TB, c *sessionCommitter, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.queue)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d sessions queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitLeading waits until a caller commits for the committer.
func waitLeading(tb testing.TB, c *sessionCommitter) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		leading := c.leading
		c.mu.Unlock()
		if leading {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("no caller commits")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSessions_GroupCommit checks that sessions created while a commit is under way
// are written together, in one more transaction, and that each call returns a
// session that is there.
func TestSessions_GroupCommit(t *testing.T) {
	db := mustOpen(t, time.Now)
	s := NewSessions(db)
	release := holdWriter(t, db)
	const n = 100 // more than one 64-row insert
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { toks[i], _, errs[i] = s.CreateSession(context.Background(), fmt.Sprintf("c-%d", i), time.Hour) })
	}
	// One caller commits (and waits for the writer); the others queue behind it.
	waitQueued(t, db.sessions, n-1)
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("session %d: %v", i, errs[i])
		}
		sess, err := s.FindSession(t.Context(), toks[i])
		if err != nil || sess.CustomerID != fmt.Sprintf("c-%d", i) {
			t.Fatalf("session %d: %+v, %v", i, sess, err)
		}
	}
	if got := countSessions(t, db); got != n {
		t.Fatalf("%d sessions stored, want %d", got, n)
	}
	if g := db.sessions.groups.Load(); g != 2 {
		t.Fatalf("%d transactions for %d sessions, want 2 (the first, then all who queued)", g, n)
	}
}

// TestSessions_GroupCommitCancel cancels callers while they wait, at every stage: a
// cancelled call returns its context's error, the others their sessions, and the
// committer keeps going (no caller is left to lead a queue that nobody commits).
func TestSessions_GroupCommitCancel(t *testing.T) {
	db := mustOpen(t, time.Now)
	s := NewSessions(db)

	// Cancelled while queued: it leaves the queue.
	release := holdWriter(t, db)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, _, err := s.CreateSession(context.Background(), "leader", time.Hour); err != nil {
			t.Errorf("leader: %v", err)
		}
	})
	waitLeading(t, db.sessions)
	ctx, cancel := context.WithCancel(t.Context())
	queued := make(chan error)
	go func() { _, _, err := s.CreateSession(ctx, "quitter", time.Hour); queued <- err }()
	waitQueued(t, db.sessions, 1)
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while queued: %v, want context.Canceled", err)
	}
	waitQueued(t, db.sessions, 0)
	release()
	wg.Wait()

	// Cancelled at random moments, many at once.
	for range 5 {
		release := holdWriter(t, db)
		for i := range 40 {
			ctx, cancel := context.WithCancel(t.Context())
			wg.Go(func() {
				defer cancel()
				_, _, err := s.CreateSession(ctx, "crowd", time.Hour)
				if err != nil && (i%2 == 0 || !errors.Is(err, context.Canceled)) {
					t.Errorf("caller %d: %v", i, err)
				}
			})
			if i%2 == 1 {
				time.AfterFunc(time.Duration(i%7)*time.Millisecond, cancel)
			}
		}
		time.Sleep(5 * time.Millisecond)
		release()
		wg.Wait()
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, _, err := s.CreateSession(ctx, "after", time.Hour); err != nil {
		t.Fatalf("after the cancellations: %v", err)
	}
}

// TestSessions_CreateAfterClose fails at once rather than waiting for a writer that is
// gone.
func TestSessions_CreateAfterClose(t *testing.T) {
	db := mustOpen(t, time.Now)
	s := NewSessions(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateSession(t.Context(), "c", time.Hour); err == nil {
		t.Fatal("CreateSession after Close: no error")
	}
	if err := db.sessions.add(t.Context(), &sessionReq{}); !errors.Is(err, errClosed) {
		t.Fatalf("add after Close: %v, want errClosed", err)
	}
}

// TestSessions_DatabaseFull checks that a session the database has no room for fails
// with CodeUnavailable (the API's 503, which a caller retries), not as an internal
// error, and that the database works again once it has room. SQLite's max_page_count
// makes the file full as a full disk would.
func TestSessions_DatabaseFull(t *testing.T) {
	ctx := t.Context()
	db := mustOpen(t, time.Now)
	s := NewSessions(db)
	w, err := db.writer()
	if err != nil {
		t.Fatal(err)
	}
	var pages int64
	if err := w.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	var full error
	for i := 0; i < 10_000 && full == nil; i++ {
		_, _, full = s.CreateSession(ctx, fmt.Sprintf("c-%d", i), time.Hour)
	}
	if full == nil {
		t.Fatal("10,000 sessions fitted in a database that may not grow")
	}
	if code := revguard.ErrorCode(full); code != revguard.CodeUnavailable {
		t.Fatalf("a session in a full database: code %s (%v), want %s", code, full, revguard.CodeUnavailable)
	}
	if _, err := w.ExecContext(ctx, `PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateSession(ctx, "c-after", time.Hour); err != nil {
		t.Fatalf("a session once the database has room again: %v", err)
	}
}
