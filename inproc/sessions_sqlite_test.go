package inproc_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
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
// warmed wins without keeping other tokens out, and a warmed session is read from the
// store again once the TTL has passed since Warm began.
func TestSessionCacheWarm(t *testing.T) {
	clk := newFakeClock()
	db := MustOpenSQLite(t, t.TempDir())
	db.Now = clk.Now // before any session is made
	raw := sqlite.NewSessions(db)
	store := &countingSQLite{Sessions: raw}
	ctx := t.Context()
	// 200 live sessions, each expiring a second after the one before: about three in
	// each of the cache's 64 stripes.
	var live []string
	for range 200 {
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
	// served checks that tokens are served from memory, without a store read.
	served := func(t *testing.T, c *inproc.SessionCache, tokens []string) {
		t.Helper()
		store.finds.Store(0)
		for _, tok := range tokens {
			if s, err := c.FindSession(ctx, tok); err != nil || s.CustomerID != "c-42" {
				t.Fatalf("FindSession of a warmed session = %+v, %v", s, err)
			}
		}
		if got := store.finds.Load(); got != 0 {
			t.Fatalf("%d store reads for %d warmed sessions, want 0", got, len(tokens))
		}
	}
	// pairs are two pairs of live tokens, each pair in one of the cache's stripes (the
	// first byte of the hash modulo 64, as the cache picks it): 200 tokens in 64
	// stripes always hold such pairs.
	var pairs [][2]string
	byStripe := map[byte][]string{}
	for _, tok := range live {
		h := revguard.HashSessionToken(tok)
		byStripe[h[0]%64] = append(byStripe[h[0]%64], tok)
		if toks := byStripe[h[0]%64]; len(toks) == 2 {
			pairs = append(pairs, [2]string{toks[0], toks[1]})
		}
	}
	if len(pairs) < 2 {
		t.Fatalf("%d pairs of tokens sharing a stripe among 200", len(pairs))
	}
	without := func(tok string) []string {
		var out []string
		for _, x := range live {
			if x != tok {
				out = append(out, x)
			}
		}
		return out
	}

	t.Run("Live", func(t *testing.T) {
		c := newCache(1000)
		n, err := c.Warm(ctx, raw.EachLive, clk.Now().Add(c.TTL/2))
		if err != nil || n != len(live) {
			t.Fatalf("Warm = %d, %v; want the %d live sessions", n, err, len(live))
		}
		served(t, c, live)
		for _, tok := range []string{expired, revoked} {
			_, err := c.FindSession(ctx, tok)
			wantCode(t, "an expired or revoked session after Warm", err, revguard.CodeUnauthenticated)
		}
	})

	t.Run("TTLFromTheStart", func(t *testing.T) {
		// The read takes a minute: each session is cached as if read when Warm began,
		// so it is read again once the TTL has passed since then.
		c := newCache(1000)
		slow := func(ctx context.Context, limit int, fn func([32]byte, revguard.Session) bool) error {
			clk.Advance(time.Minute)
			return raw.EachLive(ctx, limit, fn)
		}
		if _, err := c.Warm(ctx, slow, clk.Now().Add(c.TTL/2)); err != nil {
			t.Fatal(err)
		}
		clk.Advance(c.TTL - time.Minute - time.Second)
		served(t, c, live[100:101])
		clk.Advance(time.Second)
		store.finds.Store(0)
		if _, err := c.FindSession(ctx, live[100]); err != nil {
			t.Fatal(err)
		}
		if got := store.finds.Load(); got != 1 {
			t.Fatalf("store reads once the TTL has passed since Warm began = %d, want 1", got)
		}
		clk.Advance(-c.TTL)
	})

	t.Run("Full", func(t *testing.T) {
		c := newCache(2)
		if n, err := c.Warm(ctx, raw.EachLive, clk.Now().Add(c.TTL/2)); err != nil || n != 2 {
			t.Fatalf("Warm into a cache of 2 = %d, %v; want 2", n, err)
		}
		served(t, c, live[len(live)-2:]) // those that expire last
	})

	t.Run("RefreshesTheEnding", func(t *testing.T) {
		// Before an opening: a session cached long ago, with little of its TTL left, is
		// read again; one cached lately is left as it is.
		c := newCache(1000)
		ending, fresh := live[10], live[12]
		if _, err := c.FindSession(ctx, ending); err != nil {
			t.Fatal(err)
		}
		clk.Advance(c.TTL - 2*time.Minute)
		if _, err := c.FindSession(ctx, fresh); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Warm(ctx, raw.EachLive, clk.Now().Add(c.TTL/2)); err != nil || n != len(live)-1 {
			t.Fatalf("Warm = %d, %v; want %d (all but the one cached lately)", n, err, len(live)-1)
		}
		clk.Advance(3 * time.Minute) // past the end of ending's first caching
		served(t, c, []string{ending, fresh})
		clk.Advance(-(c.TTL + time.Minute))
	})

	t.Run("Horizon", func(t *testing.T) {
		// A warm-up before an opening keeps every session until some time past it: one
		// cached 3 minutes ago, good for 7 more, is read again for a horizon of 10.
		c := newCache(1000)
		tok := live[20]
		if _, err := c.FindSession(ctx, tok); err != nil {
			t.Fatal(err)
		}
		clk.Advance(3 * time.Minute)
		n, err := c.Warm(ctx, func(ctx context.Context, limit int, fn func([32]byte, revguard.Session) bool) error {
			return raw.EachLive(ctx, limit, func(h [32]byte, s revguard.Session) bool {
				return h != revguard.HashSessionToken(tok) || fn(h, s) // only tok
			})
		}, clk.Now().Add(c.TTL))
		if err != nil || n != 1 {
			t.Fatalf("Warm = %d, %v; want tok read again", n, err)
		}
		clk.Advance(8 * time.Minute)
		served(t, c, []string{tok})
		clk.Advance(-11 * time.Minute)
	})

	t.Run("StopsOnceUseless", func(t *testing.T) {
		// A read slower than the TTL: what it would cache then could not last.
		c := newCache(1000)
		var advanced time.Duration
		n, err := c.Warm(ctx, func(ctx context.Context, limit int, fn func([32]byte, revguard.Session) bool) error {
			return raw.EachLive(ctx, limit, func(h [32]byte, s revguard.Session) bool {
				more := fn(h, s)
				clk.Advance(c.TTL)
				advanced += c.TTL
				return more
			})
		}, clk.Now().Add(c.TTL/2))
		clk.Advance(-advanced)
		if err != nil || n != 1 {
			t.Fatalf("Warm = %d, %v; want 1 (it stops once the TTL has passed)", n, err)
		}
	})

	t.Run("RevokedWhileWarming", func(t *testing.T) {
		c := newCache(1000)
		victim := pairs[0][0]
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
		if n, err := c.Warm(ctx, each, clk.Now().Add(c.TTL/2)); err != nil || n != len(live)-1 {
			t.Fatalf("Warm = %d, %v; want %d (all live but the revoked)", n, err, len(live)-1)
		}
		_, err := c.FindSession(ctx, victim)
		wantCode(t, "a session revoked while the cache was warmed", err, revguard.CodeUnauthenticated)
		// Every other token is cached, the one of the victim's stripe (pairs[0][1]) too.
		served(t, c, without(victim))
	})

	t.Run("RevokedBeforeTheReadWasPassedOn", func(t *testing.T) {
		// A revocation made once Warm has begun, whose token the store's read then
		// still passes on (a snapshot taken before it).
		c := newCache(1000)
		victim, neighbour := pairs[1][0], pairs[1][1]
		s, err := raw.FindSession(ctx, victim)
		if err != nil {
			t.Fatal(err)
		}
		stale := func(ctx context.Context, limit int, fn func([32]byte, revguard.Session) bool) error {
			if err := c.DeleteSession(ctx, victim); err != nil {
				return err
			}
			ns, err := raw.FindSession(ctx, neighbour)
			if err != nil {
				return err
			}
			fn(revguard.HashSessionToken(victim), s)
			fn(revguard.HashSessionToken(neighbour), ns)
			return nil
		}
		if n, err := c.Warm(ctx, stale, clk.Now().Add(c.TTL/2)); err != nil || n != 1 {
			t.Fatalf("Warm = %d, %v; want 1 (the neighbour, not the revoked)", n, err)
		}
		_, err = c.FindSession(ctx, victim)
		wantCode(t, "a session revoked before the read passed it on", err, revguard.CodeUnauthenticated)
		served(t, c, []string{neighbour})
		// A second Warm adds the rest: all live but the two revoked so far (pairs[0][0]
		// above, and the victim) and the neighbour, cached already.
		if n, err := c.Warm(ctx, raw.EachLive, clk.Now().Add(c.TTL/2)); err != nil || n != len(live)-3 {
			t.Fatalf("second Warm = %d, %v; want %d", n, err, len(live)-3)
		}
	})

	t.Run("Cancelled", func(t *testing.T) {
		c := newCache(1000)
		cctx, cancel := context.WithCancel(ctx)
		each := func(ctx context.Context, limit int, fn func([32]byte, revguard.Session) bool) error {
			return raw.EachLive(ctx, limit, func(h [32]byte, s revguard.Session) bool {
				cancel()
				return fn(h, s)
			})
		}
		if n, err := c.Warm(cctx, each, clk.Now().Add(c.TTL/2)); !errors.Is(err, context.Canceled) || n != 1 {
			t.Fatalf("Warm cancelled after the first session = %d, %v; want 1 and context.Canceled", n, err)
		}
	})
}

// BenchmarkSessionCacheWarm measures how fast a starting server fills its session cache
// from SQLite: sessions a second over a file of 200,000 live sessions, the whole table
// read in expiry order and cached each time, and how long the first one takes.
//
//	go test -run '^$' -bench SessionCacheWarm -benchtime 3x ./inproc
func BenchmarkSessionCacheWarm(b *testing.B) {
	const sessions = 200_000
	dir := b.TempDir()
	db := MustOpenSQLite(b, dir)
	// The sessions are written straight into the table, in one transaction: issuing
	// them through CreateSession, each durable, would take most of a minute.
	raw, err := sql.Open("sqlite", filepath.Join(dir, "revguard.db"))
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
			h[:], "c-"+strconv.Itoa(i), created.UnixNano(), created.Add(time.Hour).UnixNano()); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	store := sqlite.NewSessions(db)
	var first time.Duration // summed over the runs
	b.ResetTimer()
	for b.Loop() {
		c := inproc.NewSessionCacheSize(store, sessions)
		start, seen := time.Now(), false
		timed := func(ctx context.Context, limit int, fn func([32]byte, revguard.Session) bool) error {
			return store.EachLive(ctx, limit, func(h [32]byte, s revguard.Session) bool {
				if !seen {
					first, seen = first+time.Since(start), true
				}
				return fn(h, s)
			})
		}
		n, err := c.Warm(b.Context(), timed, time.Now().Add(c.TTL/2))
		c.Close()
		if err != nil || n != sessions {
			b.Fatalf("Warm = %d, %v; want %d", n, err, sessions)
		}
	}
	b.ReportMetric(float64(b.N*sessions)/b.Elapsed().Seconds(), "sessions/s")
	b.ReportMetric(float64(first.Microseconds())/1e3/float64(b.N), "ms-to-first")
}
