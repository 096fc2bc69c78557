package inproc

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// openInternal opens an Inventory on a fresh journal in dir. Inside a synctest bubble
// its clock is the bubble's fake clock. The caller closes it with closeInternal.
func openInternal(t *testing.T, dir string) *Inventory {
	t.Helper()
	j := journal.New(filepath.Join(dir, "journal"))
	j.Logger = slog.New(slog.DiscardHandler)
	if err := j.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	inv := NewInventory(j, filepath.Join(dir, "snapshots"))
	inv.Logger = slog.New(slog.DiscardHandler)
	if err := inv.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return inv
}

func closeInternal(t *testing.T, inv *Inventory) {
	t.Helper()
	if err := inv.Close(); err != nil {
		t.Error(err)
	}
	if err := inv.Journal.Close(); err != nil {
		t.Error(err)
	}
}

// timers returns the number of entries of the expirer's heap.
func (inv *Inventory) timers() int {
	inv.exp.mu.Lock()
	defer inv.exp.mu.Unlock()
	return len(inv.exp.heap)
}

// rawState reads a SKU's counts and a reservation's state without expiring anything,
// to see what the expirer alone did.
func rawState(inv *Inventory, skuID, resID string) (held int64, avail int64, st resState) {
	s := inv.lookup(skuID)
	r := inv.findRes(resID)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held, s.avail.Load(), r.state
}

func mustPut(t *testing.T, inv *Inventory, id string, stock, limit, hold int64) {
	t.Helper()
	if _, _, err := inv.PutSKU(t.Context(), id, revguard.SKUUpdate{Stock: stock, PerCustomerLimit: limit, HoldSeconds: hold}); err != nil {
		t.Fatal(err)
	}
}

func mustReserve(t *testing.T, inv *Inventory, skuID, customer string, qty int64) revguard.Reservation {
	t.Helper()
	r, _, err := inv.Reserve(t.Context(), revguard.ReserveRequest{SKU: skuID, CustomerID: customer, Quantity: qty})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestExpirerReturnsUnitsAtTheDeadline(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		inv := openInternal(t, dir)
		defer closeInternal(t, inv)
		mustPut(t, inv, "sku-1", 3, 2, 10)
		r := mustReserve(t, inv, "sku-1", "c1", 2)
		lastSeq := inv.Journal.LastSeq()

		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait()
		if held, avail, st := rawState(inv, "sku-1", r.ID); held != 2 || avail != 1 || st != stHeld {
			t.Fatalf("1ns before the deadline: held %d, available %d, state %d; want 2, 1, held", held, avail, st)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		// The expirer's timer fired at the deadline, with no one calling the inventory.
		if held, avail, st := rawState(inv, "sku-1", r.ID); held != 0 || avail != 3 || st != stExpired {
			t.Fatalf("at the deadline: held %d, available %d, state %d; want 0, 3, expired", held, avail, st)
		}
		if got := inv.Journal.LastSeq(); got != lastSeq+1 {
			t.Fatalf("journal last seq %d, want %d (one EventExpired)", got, lastSeq+1)
		}
		if n := inv.timers(); n != 0 {
			t.Fatalf("%d expirer entries left, want 0", n)
		}
		// The expiry is durable: the next read waits for nothing.
		if err := inv.Journal.Wait(t.Context(), lastSeq+1); err != nil {
			t.Fatal(err)
		}
	})
}

func TestExpirerIdleSKUsHaveNoTimer(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		inv := openInternal(t, dir)
		defer closeInternal(t, inv)
		for i := range 100 {
			mustPut(t, inv, fmt.Sprintf("sku-%d", i), 10, 5, 60)
		}
		if n := inv.timers(); n != 0 {
			t.Fatalf("%d expirer entries for 100 idle SKUs, want 0", n)
		}
		// Holds on 10 SKUs, 5 each: one entry per SKU, not per hold.
		var ids []string
		for i := range 10 {
			for c := range 5 {
				ids = append(ids, mustReserve(t, inv, fmt.Sprintf("sku-%d", i), fmt.Sprintf("c%d", c), 1).ID)
			}
			time.Sleep(time.Second)
		}
		if n := inv.timers(); n != 10 {
			t.Fatalf("%d expirer entries for 10 SKUs with holds, want 10", n)
		}
		// Confirmed or released holds leave the SKU idle again once their stale entry
		// has fired.
		for i, id := range ids {
			if i%2 == 0 {
				_, err := inv.Confirm(t.Context(), revguard.ConfirmRequest{ID: id, CustomerID: fmt.Sprintf("c%d", i%5)})
				if err != nil {
					t.Fatal(err)
				}
			} else if _, err := inv.Release(t.Context(), id, ""); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := inv.timers(); n != 0 {
			t.Fatalf("%d expirer entries after every hold ended, want 0", n)
		}
		if st := inv.Stats(); st.Holds != 0 || st.SKUs != 100 {
			t.Fatalf("Stats = %+v, want 100 SKUs, 0 holds", st)
		}
	})
}

func TestExpirerEarlierDeadlineAfterPutSKU(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		inv := openInternal(t, dir)
		defer closeInternal(t, inv)
		mustPut(t, inv, "sku-1", 10, 5, 3600)
		long := mustReserve(t, inv, "sku-1", "c1", 1)
		// A shorter hold duration: the new hold is due first and must not wait for the
		// hour-long one.
		mustPut(t, inv, "sku-1", 10, 5, 5)
		short := mustReserve(t, inv, "sku-1", "c2", 1)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if _, _, st := rawState(inv, "sku-1", short.ID); st != stExpired {
			t.Fatalf("short hold state %d after 5s, want expired", st)
		}
		if _, _, st := rawState(inv, "sku-1", long.ID); st != stHeld {
			t.Fatalf("long hold state %d after 5s, want held", st)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if held, avail, st := rawState(inv, "sku-1", long.ID); st != stExpired || held != 0 || avail != 10 {
			t.Fatalf("after an hour: held %d, available %d, state %d; want 0, 10, expired", held, avail, st)
		}
	})
}

func TestExpirerManyHoldsWithinOneSecond(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		inv := openInternal(t, dir)
		defer closeInternal(t, inv)
		mustPut(t, inv, "sku-1", 1000, 1000, 1)
		var ids []string
		for i := range 200 {
			ids = append(ids, mustReserve(t, inv, "sku-1", fmt.Sprintf("c%d", i%7), 1).ID)
			time.Sleep(time.Millisecond)
		}
		// 200 holds created over 0.2 s, each due 1 s after its creation: all are
		// expired by the time the last one is due.
		time.Sleep(time.Second)
		synctest.Wait()
		for _, id := range ids {
			if _, _, st := rawState(inv, "sku-1", id); st != stExpired {
				t.Fatalf("hold %s state %d, want expired", id, st)
			}
		}
		if held, avail, _ := rawState(inv, "sku-1", ids[0]); held != 0 || avail != 1000 {
			t.Fatalf("held %d, available %d; want 0, 1000", held, avail)
		}
	})
}
