package inproc_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
)

// heldDisk is an engine whose journal's group commits can be held back: while held,
// the flusher stops after the commit in progress (in its OnFlush hook), so that later
// changes are applied in memory but not durable.
type heldDisk struct {
	inv     *inproc.Inventory
	j       *journal.Journal
	holding atomic.Bool
	after   atomic.Uint64 // the flush that makes a seq above this durable is the last
	release chan struct{}
}

func mustOpenHeldDisk(tb testing.TB) *heldDisk {
	tb.Helper()
	h := &heldDisk{release: make(chan struct{})}
	dir := tb.TempDir()
	j := journal.New(filepath.Join(dir, "journal"))
	j.Logger = slog.New(slog.DiscardHandler)
	j.OnFlush = func(int, int, time.Duration) {
		if h.holding.Load() && j.Durable() > h.after.Load() {
			<-h.release
		}
	}
	h.j = j
	if err := j.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	h.inv = inproc.NewInventory(j, filepath.Join(dir, "snapshots"))
	h.inv.Logger = slog.New(slog.DiscardHandler)
	if err := h.inv.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		h.unhold()
		h.inv.Close()
		j.Close()
	})
	return h
}

// hold makes the next group commit the last one until unhold: it commits a change to
// the SKU "marker", whose flush then blocks.
func (h *heldDisk) hold(tb testing.TB) {
	tb.Helper()
	h.after.Store(h.j.LastSeq())
	h.holding.Store(true)
	if _, _, err := h.inv.PutSKU(context.Background(), "marker", revguard.SKUUpdate{Stock: 1, PerCustomerLimit: 1, HoldSeconds: 60}); err != nil {
		tb.Fatal(err)
	}
}

func (h *heldDisk) unhold() {
	if h.holding.CompareAndSwap(true, false) {
		close(h.release)
	}
}

// TestPrecheckReserve shows that the gateway's pre-check lets a request that may
// succeed through without waiting for another reservation's group commit, and that a
// refusal waits until the state it depends on is durable.
func TestPrecheckReserve(t *testing.T) {
	ctx := context.Background()
	h := mustOpenHeldDisk(t)
	inv := h.inv
	if _, _, err := inv.PutSKU(ctx, "shoe", revguard.SKUUpdate{Stock: 2, PerCustomerLimit: 1, HoldSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	h.hold(t)

	// alice's hold is applied in memory, not durable while the disk is held.
	reserved := make(chan error, 1)
	go func() {
		_, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "shoe", CustomerID: "alice", Quantity: 1})
		reserved <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// A pre-check that waited for alice's hold would run into this deadline.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		av, err := inv.PrecheckReserve(wctx, "shoe", 1)
		cancel()
		if err != nil {
			t.Fatalf("PrecheckReserve(1) while a hold is on its way to disk: %v (it must not wait)", err)
		}
		if av.Available == 1 {
			break // it sees alice's hold and did not wait for it: the disk is held
		}
		if time.Now().After(deadline) {
			t.Fatal("alice's hold never showed in PrecheckReserve")
		}
		time.Sleep(time.Millisecond)
	}

	// Two units would be refused: that answer depends on alice's hold, so it waits.
	refused := make(chan revguard.Availability, 1)
	go func() {
		av, err := inv.PrecheckReserve(ctx, "shoe", 2)
		if err != nil {
			t.Errorf("PrecheckReserve(2): %v", err)
		}
		refused <- av
	}()
	// Availability (the public view) waits too.
	public := make(chan revguard.Availability, 1)
	go func() {
		av, _ := inv.Availability(ctx, "shoe")
		public <- av
	}()
	select {
	case av := <-refused:
		t.Fatalf("PrecheckReserve(2) answered %+v before alice's hold was durable", av)
	case av := <-public:
		t.Fatalf("Availability answered %+v before alice's hold was durable", av)
	case err := <-reserved:
		t.Fatalf("alice's Reserve answered (%v) while the disk was held", err)
	case <-time.After(200 * time.Millisecond):
	}

	h.unhold()
	if err := <-reserved; err != nil {
		t.Fatalf("alice's Reserve: %v", err)
	}
	for name, ch := range map[string]chan revguard.Availability{"PrecheckReserve(2)": refused, "Availability": public} {
		if av := <-ch; av.Available != 1 {
			t.Errorf("%s after the disk caught up: available %d, want 1", name, av.Available)
		}
	}
}

// TestPrecheckReserveNotFound: an unknown SKU is refused at once.
func TestPrecheckReserveNotFound(t *testing.T) {
	inv := MustOpenEngine(t, t.TempDir(), nil, nil).Inv
	_, err := inv.PrecheckReserve(context.Background(), "nope", 1)
	if got := revguard.ErrorCode(err); got != revguard.CodeSKUNotFound {
		t.Fatalf("PrecheckReserve of an unknown SKU: %v (code %q), want %q", err, got, revguard.CodeSKUNotFound)
	}
}
