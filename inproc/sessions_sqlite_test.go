package inproc_test

import (
	"path/filepath"
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
