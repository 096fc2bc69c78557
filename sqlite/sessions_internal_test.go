package sqlite

import (
	"bytes"
	"context"
	"path/filepath"
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
