package revguardtest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// StressOptions sets the size of a Stress run.
type StressOptions struct {
	Prefix     string // SKU ids are Prefix-0, Prefix-1, ...; they must not exist yet
	SKUs       int    // 1 for one hot SKU
	Goroutines int
	Ops        int   // reservations attempted by each goroutine
	Stock      int64 // per SKU
	Limit      int64 // per customer
	Customers  int   // distinct customers, shared by the goroutines
	// Clock, when set, is advanced during the run so that holds (of 1 second) expire
	// while others are taken, confirmed, revived and released.
	Clock *Clock
}

// stressRes is a reservation Stress made.
type stressRes struct {
	id, sku, customer string
}

// Stress creates o.SKUs SKUs and runs o.Goroutines goroutines that each try o.Ops
// reservations of 1 or 2 units, and confirm, release, revive or abandon them. It then
// checks, per SKU: the invariants; held and sold equal the sums over the reservations
// made (so nothing was lost or counted twice); no customer holds or owns more than the
// limit; every id is unique. Only domain refusals are tolerated as errors.
func Stress(tb testing.TB, inv revguard.Inventory, o StressOptions) {
	tb.Helper()
	ctx := tb.Context()
	hold := int64(600)
	if o.Clock != nil {
		hold = 1
	}
	skus := make([]string, o.SKUs)
	for i := range skus {
		skus[i] = fmt.Sprintf("%s-%d", o.Prefix, i)
		if _, _, err := inv.PutSKU(ctx, skus[i], revguard.SKUUpdate{Stock: o.Stock, PerCustomerLimit: o.Limit, HoldSeconds: hold}); err != nil {
			tb.Fatalf("PutSKU(%s): %v", skus[i], err)
		}
	}

	stop := make(chan struct{})
	var ticker sync.WaitGroup
	if o.Clock != nil {
		// The ticker goroutine, started here, exits when stop is closed.
		ticker.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
					o.Clock.Advance(50 * time.Millisecond)
				}
			}
		})
	}

	var (
		mu       sync.Mutex
		made     []stressRes
		failures atomic.Int64
		wg       sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			tb.Errorf(format, args...)
		}
	}
	allowed := func(what string, err error, codes ...revguard.Code) {
		if err == nil {
			return
		}
		code := revguard.ErrorCode(err)
		for _, c := range codes {
			if code == c {
				return
			}
		}
		fail("%s: unexpected error %v", what, err)
	}
	for g := range o.Goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			var mine []stressRes
			for range o.Ops {
				skuID := skus[rng.IntN(len(skus))]
				customer := fmt.Sprintf("%s-c%d", o.Prefix, rng.IntN(o.Customers))
				r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: skuID, CustomerID: customer, Quantity: 1 + rng.Int64N(2)})
				allowed("Reserve", err, revguard.CodeSoldOut, revguard.CodeLimitExceeded)
				if err != nil {
					continue
				}
				mine = append(mine, stressRes{r.ID, skuID, customer})
				switch p := rng.IntN(10); {
				case p < 4:
					_, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: customer})
					allowed("Confirm", err, revguard.CodeHoldExpired)
					if revguard.ErrorCode(err) == revguard.CodeHoldExpired && p < 2 {
						_, err = inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: customer, Revive: true})
						allowed("Confirm with revive", err, revguard.CodeSoldOut, revguard.CodeLimitExceeded)
					}
				case p < 7:
					_, err := inv.Release(ctx, r.ID, customer)
					allowed("Release", err, revguard.CodeHoldExpired)
				case p < 8:
					s, err := inv.FindSKU(ctx, skuID)
					allowed("FindSKU", err)
					if err == nil && (s.Available < 0 || s.Held < 0 || s.Sold < 0 || s.Available+s.Held+s.Sold != s.Stock) {
						fail("FindSKU during the run: %+v breaks the invariant", s)
					}
				}
			}
			mu.Lock()
			made = append(made, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(stop)
	ticker.Wait()
	if tb.Failed() {
		return
	}
	checkReservationsMade(tb, inv, skus, o.Limit, made)
}

// checkReservationsMade checks the SKUs skus after a run that made exactly the
// reservations made (and no others on those SKUs): invariants, sums, limits, ids.
func checkReservationsMade(tb testing.TB, inv revguard.Inventory, skus []string, limit int64, made []stressRes) {
	tb.Helper()
	ctx := tb.Context()
	state := make(map[string]revguard.SKU)
	for _, id := range skus {
		s, err := inv.FindSKU(ctx, id) // expires what is due first
		if err != nil {
			tb.Fatalf("FindSKU(%s): %v", id, err)
		}
		CheckSKU(tb, s)
		state[id] = s
	}
	held := make(map[string]int64)
	sold := make(map[string]int64)
	owned := make(map[[2]string]int64)
	seen := make(map[string]bool)
	for _, m := range made {
		if seen[m.id] {
			tb.Fatalf("reservation id %s returned twice", m.id)
		}
		seen[m.id] = true
		r, err := inv.FindReservation(ctx, m.id)
		if err != nil {
			tb.Fatalf("FindReservation(%s) of an acknowledged reservation: %v", m.id, err)
		}
		if r.SKU != m.sku || r.CustomerID != m.customer {
			tb.Fatalf("reservation %s is %s/%s, made for %s/%s", m.id, r.SKU, r.CustomerID, m.sku, m.customer)
		}
		switch r.Status {
		case revguard.StatusHeld:
			held[r.SKU] += r.Quantity
		case revguard.StatusConfirmed:
			sold[r.SKU] += r.Quantity
		}
		if r.Status.Counts() {
			owned[[2]string{r.SKU, r.CustomerID}] += r.Quantity
		}
	}
	for _, id := range skus {
		if s := state[id]; s.Held != held[id] || s.Sold != sold[id] {
			tb.Errorf("SKU %s: held %d, sold %d; its reservations hold %d and sold %d", id, s.Held, s.Sold, held[id], sold[id])
		}
	}
	for k, n := range owned {
		if n > limit {
			tb.Errorf("customer %s holds or owns %d units of %s, over the limit of %d", k[1], n, k[0], limit)
		}
	}
}
