package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
)

func TestSessions(t *testing.T) {
	revguardtest.TestSessions(t, func(tb testing.TB, now func() time.Time) revguard.Sessions {
		return sqlite.NewSessions(MustOpenDBAt(tb, filepath.Join(tb.TempDir(), "revguard.db"), now))
	})
}

func TestSessions_PurgeExpired(t *testing.T) {
	clock := &revguardtest.SessionClock{}
	s := sqlite.NewSessions(MustOpenDBAt(t, filepath.Join(t.TempDir(), "revguard.db"), clock.Now))
	ctx := t.Context()
	short, _, err := s.CreateSession(ctx, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	long, _, err := s.CreateSession(ctx, "b", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeExpired(ctx); err != nil || n != 0 {
		t.Fatalf("PurgeExpired before expiry = %d, %v; want 0", n, err)
	}
	clock.Advance(time.Minute)
	if n, err := s.PurgeExpired(ctx); err != nil || n != 1 {
		t.Fatalf("PurgeExpired = %d, %v; want 1", n, err)
	}
	if _, err := s.FindSession(ctx, short); revguard.ErrorCode(err) != revguard.CodeUnauthenticated {
		t.Fatalf("purged session: %v", err)
	}
	if _, err := s.FindSession(ctx, long); err != nil {
		t.Fatalf("live session after purge: %v", err)
	}
	if n, err := s.PurgeExpired(ctx); err != nil || n != 0 {
		t.Fatalf("second PurgeExpired = %d, %v; want 0", n, err)
	}
}

// BenchmarkSessions_CreateSession measures session creation with many callers at once,
// as when a crowd logs in before a drop: each session is durable when its call returns.
func BenchmarkSessions_CreateSession(b *testing.B) {
	for _, callers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := sqlite.NewSessions(MustOpenDB(b))
			b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := s.CreateSession(context.Background(), "crowd", time.Hour); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sessions/s")
		})
	}
}

// BenchmarkSessions_FindSession measures a session read from the store, what each
// buyer's first request costs when its session is not cached (a drop whose crowd
// logged in earlier): sessions read in turn, 16 callers at once, from a table of 10,000
// and of 300,000 (larger than SQLite's own page cache).
//
//	go test ./sqlite -run '^$' -bench Sessions_FindSession -benchtime 2s
func BenchmarkSessions_FindSession(b *testing.B) {
	for _, n := range []int{10_000, 300_000} {
		ctx := context.Background()
		s := sqlite.NewSessions(MustOpenDB(b))
		tokens := make([]string, n)
		var wg sync.WaitGroup
		for w := range 64 { // concurrent creations share commits
			wg.Go(func() {
				for i := w; i < n; i += 64 {
					tok, _, err := s.CreateSession(ctx, fmt.Sprintf("crowd-%d", i), time.Hour)
					if err != nil {
						b.Error(err)
						return
					}
					tokens[i] = tok
				}
			})
		}
		wg.Wait()
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			var next atomic.Int64
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					// A stride through the tokens, as arrivals come in no order.
					if _, err := s.FindSession(ctx, tokens[next.Add(7919)%int64(n)]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func TestSessions_EachLive(t *testing.T) {
	clock := &revguardtest.SessionClock{}
	s := sqlite.NewSessions(MustOpenDBAt(t, filepath.Join(t.TempDir(), "revguard.db"), clock.Now))
	ctx := t.Context()
	create := func(customer string, ttl time.Duration) string {
		t.Helper()
		tok, _, err := s.CreateSession(ctx, customer, ttl)
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second) // each session newer than the one before
		return tok
	}
	create("old", 2*time.Hour)   // the first created, the last to expire
	create("short", time.Minute) // expired below
	revoked := create("revoked", time.Hour)
	mid := create("mid", time.Hour)
	create("new", time.Hour)
	if err := s.DeleteSession(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)

	live := func(limit int, stopAfter int) []string {
		t.Helper()
		var got []string
		err := s.EachLive(ctx, limit, func(h [32]byte, sess revguard.Session) bool {
			if !sess.ExpiresAt.After(clock.Now()) || sess.CreatedAt.IsZero() {
				t.Errorf("EachLive passed %+v, not live at %v", sess, clock.Now())
			}
			got = append(got, sess.CustomerID)
			return len(got) < stopAfter
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got, want := fmt.Sprint(live(10, 10)), "[old new mid]"; got != want {
		t.Errorf("EachLive = %s, want %s: the live sessions, those that expire last first", got, want)
	}
	if got, want := fmt.Sprint(live(2, 10)), "[old new]"; got != want {
		t.Errorf("EachLive with limit 2 = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(live(10, 1)), "[old]"; got != want {
		t.Errorf("EachLive stopped after one = %s, want %s", got, want)
	}
	if got := live(0, 10); len(got) != 0 {
		t.Errorf("EachLive with limit 0 = %v, want nothing", got)
	}
	// The hash passed is the token's, as the cache keys it.
	var found bool
	if err := s.EachLive(ctx, 10, func(h [32]byte, sess revguard.Session) bool {
		found = found || (h == revguard.HashSessionToken(mid) && sess.CustomerID == "mid")
		return true
	}); err != nil || !found {
		t.Errorf("EachLive did not pass mid's token hash with its session (err %v)", err)
	}
}
