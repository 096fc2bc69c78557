package sqlite_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/revenueguard/revguard/sqlite"
)

// MustOpenDB opens a new database in a temporary directory, closed at the end of the
// test.
func MustOpenDB(tb testing.TB) *sqlite.DB {
	tb.Helper()
	return MustOpenDBAt(tb, filepath.Join(tb.TempDir(), "revguard.db"), time.Now)
}

// MustOpenDBAt opens the database at path with the clock now.
func MustOpenDBAt(tb testing.TB, path string, now func() time.Time) *sqlite.DB {
	tb.Helper()
	db := sqlite.NewDB(path)
	db.Now = now
	db.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := db.Open(tb.Context()); err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return db
}

func TestDB_Open(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sub", "dir", "revguard.db")
		db := MustOpenDBAt(t, path, time.Now)
		if err := db.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "revguard.db")
		db := sqlite.NewDB(path)
		if err := db.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		MustOpenDBAt(t, path, time.Now) // migrations already applied: nothing to do
	})
	t.Run("ErrNoPath", func(t *testing.T) {
		if err := sqlite.NewDB("").Open(t.Context()); err == nil {
			t.Fatal("Open with no path: no error")
		}
	})
	t.Run("ErrReadOnlyMissing", func(t *testing.T) {
		db := sqlite.NewDB(filepath.Join(t.TempDir(), "missing.db"))
		db.ReadOnly = true
		if err := db.Open(t.Context()); err == nil {
			db.Close()
			t.Fatal("read-only Open of a missing file: no error")
		}
	})
}
