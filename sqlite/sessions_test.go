package sqlite_test

import (
	"path/filepath"
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
