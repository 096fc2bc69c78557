package inproc_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/revguardtest"
)

// openReadOnly opens a ReadOnly inventory on an engine's data directory.
func openReadOnly(t *testing.T, dir string, now func() time.Time) *inproc.Inventory {
	t.Helper()
	j := journal.New(filepath.Join(dir, "journal"))
	j.ReadOnly = true
	j.Logger = slog.New(slog.DiscardHandler)
	if err := j.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	inv := inproc.NewInventory(j, filepath.Join(dir, "snapshots"))
	inv.ReadOnly = true
	inv.Logger = slog.New(slog.DiscardHandler)
	inv.Now = now
	if err := inv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		inv.Close()
		j.Close()
	})
	return inv
}

// listDir returns the names in dir with their sizes, to see that nothing was written.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, _ := d.Info()
			out = append(out, fmt.Sprintf("%s %d %v", path, info.Size(), info.ModTime()))
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func TestReadOnly(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	clock := revguardtest.NewClock(time.Time{})
	w := MustOpenEngine(t, dir, clock.Now, nil)
	if _, _, err := w.Inv.PutSKU(ctx, "sku-1", revguard.SKUUpdate{Stock: 10, PerCustomerLimit: 5, HoldSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	held, _, err := w.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c1", Quantity: 2})
	if err != nil {
		t.Fatal(err)
	}
	sold, _, err := w.Inv.Reserve(ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c2", Quantity: 3, IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Inv.Confirm(ctx, revguard.ConfirmRequest{ID: sold.ID, CustomerID: "c2"}); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, dir)

	// Beside the running writer.
	ro := openReadOnly(t, dir, clock.Now)
	if got, want := ro.AppliedSeq(), w.J.Durable(); got != want {
		t.Fatalf("AppliedSeq = %d, want the writer's durable seq %d", got, want)
	}
	s, err := ro.FindSKU(ctx, "sku-1")
	if err != nil || s.Stock != 10 || s.Held != 2 || s.Sold != 3 || s.Available != 5 {
		t.Fatalf("read-only FindSKU = %+v, %v; want 10 stock, 2 held, 3 sold", s, err)
	}
	if r, found, err := ro.FindIdempotent(ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c2", Quantity: 3, IdempotencyKey: "k"}); err != nil || !found || r.ID != sold.ID {
		t.Fatalf("read-only FindIdempotent = %s, %v, %v", r.ID, found, err)
	}

	// Every change is refused.
	_, _, err = ro.PutSKU(ctx, "sku-2", revguard.SKUUpdate{Stock: 1, PerCustomerLimit: 1, HoldSeconds: 1})
	invWantCode(t, "PutSKU", err, revguard.CodeUnavailable)
	_, _, err = ro.Reserve(ctx, revguard.ReserveRequest{SKU: "sku-1", CustomerID: "c3", Quantity: 1})
	invWantCode(t, "Reserve", err, revguard.CodeUnavailable)
	_, err = ro.Confirm(ctx, revguard.ConfirmRequest{ID: held.ID, CustomerID: "c1"})
	invWantCode(t, "Confirm", err, revguard.CodeUnavailable)
	_, err = ro.Release(ctx, held.ID, "")
	invWantCode(t, "Release", err, revguard.CodeUnavailable)

	// Nothing expires: the state stays as journaled.
	clock.Advance(time.Hour)
	if r, err := ro.FindReservation(ctx, held.ID); err != nil || r.Status != revguard.StatusHeld {
		t.Fatalf("read-only FindReservation past the deadline = %s, %v; want held, as journaled", r.Status, err)
	}
	if a, err := ro.Availability(ctx, "sku-1"); err != nil || a.Available != 5 {
		t.Fatalf("read-only Availability = %+v, %v", a, err)
	}
	n := 0
	ro.ForEachReservation(func(revguard.Reservation) bool { n++; return true })
	if n != 2 {
		t.Fatalf("ForEachReservation saw %d reservations, want 2", n)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if after := listDir(t, dir); !slices.Equal(after, before) {
		t.Fatalf("the read-only inventory changed files:\n%v\nwas\n%v", after, before)
	}

	// On a stopped server's data, after its final snapshot.
	if r, err := w.Inv.FindReservation(ctx, held.ID); err != nil || r.Status != revguard.StatusExpired {
		t.Fatalf("writer FindReservation = %s, %v; want expired", r.Status, err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	ro = openReadOnly(t, dir, clock.Now)
	if r, err := ro.FindReservation(ctx, held.ID); err != nil || r.Status != revguard.StatusExpired {
		t.Fatalf("read-only FindReservation after the writer stopped = %s, %v; want expired", r.Status, err)
	}
	if st := ro.Stats(); st.SKUs != 1 || st.Holds != 0 {
		t.Fatalf("Stats = %+v, want 1 SKU, 0 holds", st)
	}
}

func TestReadOnlyNeedsReadOnlyJournal(t *testing.T) {
	dir := t.TempDir()
	j := journal.New(filepath.Join(dir, "journal"))
	if err := j.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	inv := inproc.NewInventory(j, filepath.Join(dir, "snapshots"))
	inv.ReadOnly = true
	if err := inv.Open(context.Background()); err == nil {
		t.Fatal("Open of a ReadOnly inventory on a writable journal succeeded")
	}
}

func invWantCode(t *testing.T, what string, err error, want revguard.Code) {
	t.Helper()
	if got := revguard.ErrorCode(err); got != want {
		t.Fatalf("%s: %v (code %q), want code %q", what, err, got, want)
	}
}
