package revguardtest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"
)

// testTimesWithinStock drives concurrent reserves, releases and expiries of one SKU
// with a clock that steps forward on every read, so that a time read before the SKU's
// serialisation point is older than the changes applied there meanwhile. Then:
//
//   - the times the reservations record never show more units held than the stock at
//     any instant (revguard.CheckHeldWithinStock): a hold is timed no earlier than the
//     release or expiry whose units it took;
//   - each hold's expires_at is its created_at plus the hold duration exactly;
//   - times are monotonic as far as callers can see: a change made by a call that
//     began after another change was observed (a reservation's created_at, a release's
//     released_at, or a deadline seen passed) is not timed before it.
func testTimesWithinStock(f *invFixture) {
	const (
		sku     = "times"
		stock   = 3
		hold    = time.Second
		workers = 8
		rounds  = 60
		step    = 7 * time.Millisecond // per clock read: a hold lasts about 140 reads
	)
	putAt := f.clock.Now()
	f.put(sku, stock, 1, int64(hold/time.Second))
	f.clock.SetStep(step)
	defer f.clock.SetStep(0)

	var (
		floor    atomic.Int64 // the latest change time observed (Unix ns)
		mu       sync.Mutex
		made     []string // ids of the reservations made
		problems []string
		released atomic.Int64
		expired  atomic.Int64
		wg       sync.WaitGroup
	)
	note := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	raise := func(t time.Time) {
		for ns := t.UnixNano(); ; {
			cur := floor.Load()
			if ns <= cur || floor.CompareAndSwap(cur, ns) {
				return
			}
		}
	}
	// notBefore notes a change timed before lo, a change observed before its call.
	notBefore := func(what string, t time.Time, lo int64) {
		if t.UnixNano() < lo {
			note("%s at %s, before %s: a change observed before the call began",
				what, t.Format(time.RFC3339Nano), time.Unix(0, lo).UTC().Format(time.RFC3339Nano))
		}
	}

	for w := range workers {
		// Each worker goroutine, started here, ends after its rounds; wg.Wait below.
		wg.Go(func() {
			for n := range rounds {
				cust := fmt.Sprintf("w%d-%d", w, n)
				lo := floor.Load()
				r, _, err := f.inv.Reserve(f.ctx, revguard.ReserveRequest{SKU: sku, CustomerID: cust, Quantity: 1})
				switch code := revguard.ErrorCode(err); {
				case err == nil:
				case code == revguard.CodeSoldOut:
					f.clock.Advance(hold / 4) // holds fall due: a later change expires them
					continue
				default:
					note("Reserve(%s): %v", cust, err)
					continue
				}
				mu.Lock()
				made = append(made, r.ID)
				mu.Unlock()
				notBefore("reservation "+r.ID+" created", r.CreatedAt, lo)
				raise(r.CreatedAt)

				switch n % 3 {
				case 0: // released at once, or found expired
					lo := floor.Load()
					rel, err := f.inv.Release(f.ctx, r.ID, cust)
					switch revguard.ErrorCode(err) {
					case "":
						released.Add(1)
						notBefore("reservation "+r.ID+" released", rel.ReleasedAt, max(lo, r.CreatedAt.UnixNano()))
						raise(rel.ReleasedAt)
					case revguard.CodeHoldExpired:
						expired.Add(1)
						raise(r.ExpiresAt) // it expired at or after its deadline
					default:
						note("Release(%s): %v", r.ID, err)
					}
				case 1: // looked at: expired once its deadline is past
					got, err := f.inv.FindReservation(f.ctx, r.ID)
					switch {
					case err != nil:
						note("FindReservation(%s): %v", r.ID, err)
					case got.Status == revguard.StatusExpired:
						expired.Add(1)
						raise(got.ExpiresAt)
					}
				default: // abandoned: it expires
				}
			}
		})
	}
	wg.Wait()

	// Every hold falls due and is expired.
	f.clock.SetStep(0)
	f.clock.Advance(2 * hold)
	f.counts(sku, stock, stock, 0, 0)
	var rs []revguard.Reservation
	for _, id := range made {
		r := f.find(id)
		rs = append(rs, r)
		if !r.ExpiresAt.Equal(r.CreatedAt.Add(hold)) {
			note("reservation %s: created_at %s, expires_at %s: want created_at + %s", id,
				r.CreatedAt.Format(time.RFC3339Nano), r.ExpiresAt.Format(time.RFC3339Nano), hold)
		}
		if r.Status == revguard.StatusReleased && r.ReleasedAt.Before(r.CreatedAt) {
			note("reservation %s released at %s, before its created_at %s", id,
				r.ReleasedAt.Format(time.RFC3339Nano), r.CreatedAt.Format(time.RFC3339Nano))
		}
	}
	if ov := revguard.CheckHeldWithinStock(rs, []revguard.StockChange{{SKU: sku, Time: putAt, Stock: stock}}); ov != nil {
		note("the recorded times show more units held than the stock: %v", ov)
	}
	if len(problems) > 0 {
		f.t.Fatalf("%d problems in %d reservations (%d released, %d seen expired), e.g.:\n%s",
			len(problems), len(made), released.Load(), expired.Load(), joinFirst(problems, 5))
	}
	// Otherwise the run proves little: units must have come back, both ways.
	if released.Load() == 0 || expired.Load() == 0 || len(made) <= stock {
		f.t.Fatalf("%d reservations, %d released, %d seen expired: too few for the check to mean anything",
			len(made), released.Load(), expired.Load())
	}
}

// joinFirst joins the first n lines of list, saying how many more there are.
func joinFirst(list []string, n int) string {
	s := ""
	for i, l := range list {
		if i == n {
			return s + fmt.Sprintf("(and %d more)", len(list)-n)
		}
		s += l + "\n"
	}
	return s
}
