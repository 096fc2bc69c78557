package inproc

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// queued returns the customers of the reserves in s's queue, oldest first.
func queued(s *sku) []string {
	var customers []string
	for op := s.queue.Load(); op != nil; op = op.next {
		customers = append(customers, op.req.CustomerID)
	}
	slices.Reverse(customers)
	return customers
}

// TestCombinedRound holds a SKU's lock while reserves arrive: they queue instead of
// waiting for the lock, and once it is free one leader applies them all, in arrival
// order (the first five get the five units, the rest are refused sold out), each
// answered only once its change or refusal is durable. A caller that stops waiting
// still has its reserve applied, and its idempotency key replays it.
func TestCombinedRound(t *testing.T) {
	inv := openInternal(t, t.TempDir())
	defer closeInternal(t, inv)
	mustPut(t, inv, "hot", 5, 1, 600)
	s := inv.lookup("hot")
	ctx := context.Background()

	const callers = 8
	type result struct {
		customer string
		res      revguard.Reservation
		err      error
		durable  bool // the reserve's change or refusal was durable when it returned
	}
	results := make(chan result, callers)
	quit, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	for i := range callers {
		customer := fmt.Sprintf("c%d", i)
		req := revguard.ReserveRequest{SKU: "hot", CustomerID: customer, Quantity: 1, IdempotencyKey: "k-" + customer}
		c := ctx
		if i == 1 {
			c = quit // gives up while queued
		}
		go func() {
			res, _, err := inv.Reserve(c, req)
			results <- result{customer, res, err, inv.Journal.Durable() >= s.lastSeq.Load()}
		}()
		// One at a time, so that the arrival order is known.
		for deadline := time.Now().Add(10 * time.Second); len(queued(s)) < i+1; runtime.Gosched() {
			if time.Now().After(deadline) {
				s.mu.Unlock()
				t.Fatalf("%d reserves queued, want %d", len(queued(s)), i+1)
			}
		}
	}
	order := queued(s)
	cancel()
	// The canceled caller returns while its reserve is still queued.
	first := <-results
	if first.customer != "c1" || !errors.Is(first.err, context.Canceled) {
		s.mu.Unlock()
		t.Fatalf("first answer while the lock is held: %+v, want c1 canceled", first)
	}
	seq := inv.Journal.LastSeq()
	s.mu.Unlock()

	got := map[string]result{}
	for range callers - 1 {
		r := <-results
		got[r.customer] = r
	}
	for i, customer := range order {
		if customer == "c1" {
			continue
		}
		r := got[customer]
		if !r.durable {
			t.Errorf("%s answered before its change was durable", customer)
		}
		if i < 5 {
			if r.err != nil || r.res.Status != revguard.StatusHeld {
				t.Errorf("arrival %d (%s): %+v, %v; want held", i, customer, r.res, r.err)
			}
		} else if revguard.ErrorCode(r.err) != revguard.CodeSoldOut {
			t.Errorf("arrival %d (%s): %v, want sold_out", i, customer, r.err)
		}
	}
	if n := inv.Journal.LastSeq() - seq; n != 5 {
		t.Errorf("%d events journaled for the round, want 5", n)
	}
	// The canceled caller's reserve was applied (it came second): a retry replays it.
	res, replayed, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "hot", CustomerID: "c1", Quantity: 1, IdempotencyKey: "k-c1"})
	if err != nil || !replayed || res.Status != revguard.StatusHeld {
		t.Fatalf("retry of the canceled reserve: %+v, replayed %v, %v", res, replayed, err)
	}
	if a, err := inv.Availability(ctx, "hot"); err != nil || a.Available != 0 {
		t.Fatalf("Availability = %+v, %v; want 0 available", a, err)
	}
	if len(queued(s)) != 0 {
		t.Fatalf("queue left with %v", queued(s))
	}
}

// TestCombinedStress reserves one hot SKU from many goroutines, with the SKU's lock
// taken now and then by confirms and releases, so that reserves both take the lock
// directly and queue: no unit is lost or granted twice, and every reserve is answered.
func TestCombinedStress(t *testing.T) {
	inv := openInternal(t, t.TempDir())
	defer closeInternal(t, inv)
	const stock, callers, each = 300, 64, 8
	mustPut(t, inv, "hot", stock, each, 600)
	ctx := context.Background()
	var mu sync.Mutex
	held := map[string]bool{}
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			customer := fmt.Sprintf("c%d", g)
			for i := range each {
				res, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "hot", CustomerID: customer, Quantity: 1})
				if err != nil {
					if revguard.ErrorCode(err) != revguard.CodeSoldOut {
						t.Error(err)
					}
					continue
				}
				switch i % 4 {
				case 1:
					_, err = inv.Release(ctx, res.ID, customer)
				case 2:
					_, err = inv.Confirm(ctx, revguard.ConfirmRequest{ID: res.ID, CustomerID: customer})
					fallthrough
				default:
					mu.Lock()
					held[res.ID] = true
					mu.Unlock()
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	sv, err := inv.FindSKU(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if sv.Held+sv.Sold != int64(len(held)) || sv.Available != stock-int64(len(held)) {
		t.Fatalf("SKU %+v, want %d held or sold of %d", sv, len(held), stock)
	}
}
