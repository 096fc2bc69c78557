package inproc_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/revguardtest"
)

// engine is an Inventory on its journal, both in one data directory.
type engine struct {
	Dir string
	J   *journal.Journal
	Inv *inproc.Inventory
}

// openEngine opens the journal in dir/journal and the inventory with snapshots in
// dir/snapshots. now may be nil (the real clock).
func openEngine(dir string, now func() time.Time, edit func(*inproc.Inventory)) (*engine, error) {
	j := journal.New(filepath.Join(dir, "journal"))
	j.Logger = slog.New(slog.DiscardHandler)
	if err := j.Open(context.Background()); err != nil {
		return nil, err
	}
	inv := inproc.NewInventory(j, filepath.Join(dir, "snapshots"))
	inv.Logger = slog.New(slog.DiscardHandler)
	if now != nil {
		inv.Now = now
	}
	if edit != nil {
		edit(inv)
	}
	if err := inv.Open(context.Background()); err != nil {
		j.Close()
		return nil, err
	}
	return &engine{Dir: dir, J: j, Inv: inv}, nil
}

// close closes the inventory, then its journal.
func (e *engine) close() error {
	err := e.Inv.Close()
	if jerr := e.J.Close(); err == nil {
		err = jerr
	}
	return err
}

// MustOpenEngine opens an engine on dir and closes it at the end of the test.
func MustOpenEngine(tb testing.TB, dir string, now func() time.Time, edit func(*inproc.Inventory)) *engine {
	tb.Helper()
	e, err := openEngine(dir, now, edit)
	if err != nil {
		tb.Fatalf("open engine: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.close(); err != nil {
			tb.Errorf("close engine: %v", err)
		}
	})
	return e
}

func TestInventory(t *testing.T) {
	revguardtest.TestInventory(t, func(tb testing.TB, clock *revguardtest.Clock) revguard.Inventory {
		return MustOpenEngine(tb, tb.TempDir(), clock.Now, nil).Inv
	})
}
