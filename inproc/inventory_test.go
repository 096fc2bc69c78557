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
	"go.uber.org/goleak"
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

func TestCloseStopsGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	e, err := openEngine(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, _, err := e.Inv.PutSKU(ctx, "sku-1", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 5, HoldSeconds: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 2}); err != nil {
		t.Fatal(err) // a hold: the expirer has a timer running
	}
	if err := e.close(); err != nil {
		t.Fatal(err)
	}
	// Changes after Close are refused; reads still answer.
	_, _, err = e.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c2", Quantity: 1})
	invWantCode(t, "Reserve after Close", err, revguard.CodeUnavailable)
	if s, err := e.Inv.FindSKU(ctx, "sku-1"); err != nil || s.Held != 2 {
		t.Fatalf("FindSKU after Close = %+v, %v", s, err)
	}
	if err := e.Inv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	goleak.VerifyNone(t, before)
}

// TestInventoryNextOpening checks the earliest opening after a time among the SKUs:
// SKUs that open at once or opened already do not count, and a SKU moved to a later
// opening counts with its new time.
func TestInventoryNextOpening(t *testing.T) {
	ctx := t.Context()
	clock := revguardtest.NewClock(time.Time{})
	inv := MustOpenEngine(t, t.TempDir(), clock.Now, nil).Inv
	now := clock.Now()
	if at, ok := inv.NextOpening(now); ok {
		t.Fatalf("NextOpening with no SKU = %v, want none", at)
	}
	put := func(id string, opens time.Time) {
		t.Helper()
		if _, _, err := inv.PutSKU(ctx, id, revguard.SKUUpdate{Stock: 3, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: opens}); err != nil {
			t.Fatal(err)
		}
	}
	put("now", time.Time{})
	put("past", now.Add(-time.Hour))
	if at, ok := inv.NextOpening(now); ok {
		t.Fatalf("NextOpening with SKUs open already = %v, want none", at)
	}
	put("later", now.Add(2*time.Hour))
	put("soon", now.Add(time.Hour))
	if at, ok := inv.NextOpening(now); !ok || !at.Equal(now.Add(time.Hour)) {
		t.Fatalf("NextOpening = %v, %v; want soon's, in an hour", at, ok)
	}
	if at, ok := inv.NextOpening(now.Add(time.Hour)); !ok || !at.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("NextOpening after soon's = %v, %v; want later's", at, ok)
	}
	put("soon", now.Add(3*time.Hour)) // postponed
	if at, ok := inv.NextOpening(now); !ok || !at.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("NextOpening after soon was postponed = %v, %v; want later's", at, ok)
	}
}
