package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
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
