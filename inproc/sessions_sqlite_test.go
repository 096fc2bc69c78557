package inproc_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
)

// TestSessionCacheOverSQLite runs the Sessions conformance suite through the cache in
// front of the real SQLite store, the pair that embedded mode runs.
func TestSessionCacheOverSQLite(t *testing.T) {
	revguardtest.TestSessions(t, func(tb testing.TB, now func() time.Time) revguard.Sessions {
		db := sqlite.NewDB(filepath.Join(tb.TempDir(), "revguard.db"))
		db.Now = now
		if err := db.Open(tb.Context()); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			if err := db.Close(); err != nil {
				tb.Error(err)
			}
		})
		c := inproc.NewSessionCache(sqlite.NewSessions(db))
		c.Now = now
		tb.Cleanup(func() { c.Close() })
		return c
	})
}

// countingSQLite is the SQLite store, counting its session reads.
type countingSQLite struct {
	*sqlite.Sessions
	finds atomic.Int64
}

func (s *countingSQLite) FindSession(ctx context.Context, token string) (revguard.Session, error) {
	s.finds.Add(1)
	return s.Sessions.FindSession(ctx, token)
}

// TestSessionCacheWarm fills a new cache from the sessions a real SQLite file holds, as
// a server does when it starts: the live ones are then served from memory, the
// expired and revoked ones are not cached, a revocation made while the cache is being
// warmed wins, and a warmed session is read from the store again after the TTL.
func TestSessionCacheWarm(t *testing.T) {
	clk := newFakeClock()
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "revguard.db"))
	db.Now = clk.Now
	if err := db.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	raw := sqlite.NewSessions(db)
	store := &countingSQLite{Sessions: raw}
	ctx := t.Context()
	var live []string
	for range 5 {
		live = append(live, mustCreate(t, raw, time.Hour))
		clk.Advance(time.Second)
	}
	expired := mustCreate(t, raw, time.Minute)
	revoked := mustCreate(t, raw, time.Hour)
	if err := raw.DeleteSession(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)

	newCache := func(size int) *inproc.SessionCache {
		c := inproc.NewSessionCacheSize(store, size)
		c.Now = clk.Now
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("Live", func(t *testing.T) {
		c := newCache(100)
		n, err := c.Warm(ctx, raw.EachLive)
		if err != nil || n != len(live) {
			t.Fatalf("Warm = %d, %v; want the %d live sessions", n, err, len(live))
		}
		store.finds.Store(0)
		for _, tok := range live {
			if s, err := c.FindSession(ctx, tok); err != nil || s.CustomerID != "c-42" {
				t.Fatalf("FindSession of a warmed session = %+v, %v", s, err)
			}
		}
		if got := store.finds.Load(); got != 0 {
			t.Fatalf("%d store reads for %d warmed sessions, want 0", got, len(live))
		}
		for _, tok := range []string{expired, revoked} {
			_, err := c.FindSession(ctx, tok)
			wantCode(t, "an expired or revoked session after Warm", err, revguard.CodeUnauthenticated)
		}
		// Warmed as if read now: read again once the TTL has passed.
		clk.Advance(c.TTL)
		store.finds.Store(0)
		if _, err := c.FindSession(ctx, live[0]); err != nil {
			t.Fatal(err)
		}
		if got := store.finds.Load(); got != 1 {
			t.Fatalf("store reads after the TTL = %d, want 1", got)
		}
		clk.Advance(-c.TTL)
	})

	t.Run("Full", func(t *testing.T) {
		c := newCache(2)
		if n, err := c.Warm(ctx, raw.EachLive); err != nil || n != 2 {
			t.Fatalf("Warm into a cache of 2 = %d, %v; want 2", n, err)
		}
		store.finds.Store(0)
		for _, tok := range live[len(live)-2:] { // the newest
			if _, err := c.FindSession(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if got := store.finds.Load(); got != 0 {
			t.Fatalf("the two newest sessions cost %d store reads, want 0", got)
		}
	})

	t.Run("RevokedWhileWarming", func(t *testing.T) {
		c := newCache(100)
		victim := live[2]
		vh := revguard.HashSessionToken(victim)
		// The revocation lands after the store's read has seen the session, before the
		// cache takes it.
		each := func(ctx context.Context, limit int, fn func([32]byte, revguard.Session) bool) error {
			return raw.EachLive(ctx, limit, func(h [32]byte, s revguard.Session) bool {
				if h == vh {
					if err := c.DeleteSession(ctx, victim); err != nil {
						t.Error(err)
					}
				}
				return fn(h, s)
			})
		}
		if n, err := c.Warm(ctx, each); err != nil || n != len(live)-1 {
			t.Fatalf("Warm = %d, %v; want %d (all live but the revoked)", n, err, len(live)-1)
		}
		_, err := c.FindSession(ctx, victim)
		wantCode(t, "a session revoked while the cache was warmed", err, revguard.CodeUnauthenticated)
	})

	t.Run("Cancelled", func(t *testing.T) {
		c := newCache(100)
		cctx, cancel := context.WithCancel(ctx)
		each := func(ctx context.Context, limit int, fn func([32]byte, revguard.Session) bool) error {
			return raw.EachLive(ctx, limit, func(h [32]byte, s revguard.Session) bool {
				cancel()
				return fn(h, s)
			})
		}
		if n, err := c.Warm(cctx, each); err == nil || n != 1 {
			t.Fatalf("Warm cancelled after the first session = %d, %v; want 1 and an error", n, err)
		}
	})
}

// BenchmarkSessionCacheWarm measures how fast a starting server fills its session cache
// from SQLite: sessions a second over a file of 200,000 live sessions, the whole table
// read and cached each time (the store's scan and sort, and the cache's inserts).
//
//	go test -run '^$' -bench SessionCacheWarm -benchtime 3x ./inproc
func BenchmarkSessionCacheWarm(b *testing.B) {
	const sessions = 200_000
	path := filepath.Join(b.TempDir(), "revguard.db")
	db := sqlite.NewDB(path)
	if err := db.Open(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	// The sessions are written straight into the table, in one transaction: issuing
	// them through CreateSession, each durable, would take most of a minute.
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	tx, err := raw.Begin()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range sessions {
		h := revguard.HashSessionToken(revguard.NewSessionToken())
		created := now.Add(time.Duration(i-sessions) * time.Millisecond)
		if _, err := tx.Exec(`INSERT INTO sessions (token_hash, customer_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			h[:], "c-"+time.Duration(i).String(), created.UnixNano(), created.Add(time.Hour).UnixNano()); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	store := sqlite.NewSessions(db)
	b.ResetTimer()
	for b.Loop() {
		c := inproc.NewSessionCacheSize(store, sessions)
		n, err := c.Warm(b.Context(), store.EachLive)
		c.Close()
		if err != nil || n != sessions {
			b.Fatalf("Warm = %d, %v; want %d", n, err, sessions)
		}
	}
	b.ReportMetric(float64(b.N*sessions)/b.Elapsed().Seconds(), "sessions/s")
}
