package loadtest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
)

// expected returns the statuses h may have in a read made at server time at (zero:
// unknown): its known final status, or for a hold still held, held before its expiry
// and expired a second after it (two seconds with whole-second timestamps).
func (h *hold) expected(at time.Time) []string {
	held, expired := string(revguard.StatusHeld), string(revguard.StatusExpired)
	var byTime []string
	switch {
	case at.IsZero():
		byTime = []string{held, expired}
	case !at.Add(time.Second).After(h.res.ExpiresAt): // Date is floored: the read was before at+1s
		byTime = []string{held}
	case !at.Before(h.res.ExpiresAt.Add(time.Second + slack(h.res.ExpiresAt))):
		byTime = []string{expired}
	default:
		byTime = []string{held, expired}
	}
	switch {
	case h.status == held:
		if h.unknown {
			return append(byTime, string(h.tried.status()))
		}
		return byTime
	case h.unknown:
		return append(byTime, h.status, string(h.tried.status()))
	}
	return []string{h.status}
}

// status is the status that a successful p leads to.
func (p plan) status() revguard.Status {
	if p == planRelease {
		return revguard.StatusReleased
	}
	return revguard.StatusConfirmed
}

// compareLedger compares the ledger's items, read at server time at, with the
// acknowledged holds. Items nobody acknowledged are allowed only for customers with
// attempts of unknown outcome, at most one per such attempt. It returns "" when they
// match.
func compareLedger(holds []*hold, attempts []*attempt, items []reservationJSON, at time.Time) string {
	byID := make(map[string]*hold, len(holds))
	for _, h := range holds {
		byID[h.res.ID] = h
	}
	unresolved := make(map[string]int)
	for _, a := range attempts {
		if a.unresolved {
			unresolved[a.cust.id]++
		}
	}
	seen := make(map[string]int, len(items))
	var problems []string
	var missing, dup, wrong, phantom int
	note := func(n *int, format string, args ...any) {
		*n++
		if len(problems) < 3 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for _, it := range items {
		seen[it.ID]++
		if seen[it.ID] == 2 {
			note(&dup, "%s listed twice", it.ID)
		}
		if seen[it.ID] > 1 {
			continue
		}
		h := byID[it.ID]
		if h == nil {
			if unresolved[it.CustomerID] > 0 {
				unresolved[it.CustomerID]--
				continue
			}
			note(&phantom, "%s of %s never acknowledged", it.ID, it.CustomerID)
			continue
		}
		if it.CustomerID != h.res.CustomerID || it.Quantity != h.res.Quantity || it.SKU != h.res.SKU {
			note(&wrong, "%s: %s ×%d of %s, acknowledged %s ×%d of %s", it.ID, it.SKU, it.Quantity, it.CustomerID,
				h.res.SKU, h.res.Quantity, h.res.CustomerID)
			continue
		}
		if want := h.expected(at); !contains(want, it.Status) {
			note(&wrong, "%s is %s, want %s", it.ID, it.Status, strings.Join(want, " or "))
		}
	}
	for _, h := range holds {
		if seen[h.res.ID] == 0 {
			note(&missing, "%s of %s missing", h.res.ID, h.res.CustomerID)
		}
	}
	if missing+dup+wrong+phantom == 0 {
		return ""
	}
	return fmt.Sprintf("%d acknowledged reservations missing, %d listed twice, %d wrong, %d never acknowledged: %s",
		missing, dup, wrong, phantom, strings.Join(problems, "; "))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// checkCounts: the final GET of the SKU satisfies available + held + sold == stock
// with each term non-negative, sold equals the units of the acknowledged confirms, and
// held is within what the acknowledged holds allow at the read's server time (plus the
// units of attempts of unknown outcome); and every sample taken during the sale
// satisfied the invariant.
func (an *analysis) checkCounts(final skuJSON, at time.Time, samples int, bad []string) Check {
	if len(bad) > 0 {
		return fail(CheckCounts, "a sample during the sale broke the invariant: %s", bad[0])
	}
	if msg := skuInvariant(final, an.s.Stock); msg != "" {
		return fail(CheckCounts, "at the end: %s", msg)
	}
	var soldMin, soldMax, heldMin, heldMax int64
	for _, h := range an.holds {
		q := h.res.Quantity
		want := h.expected(at)
		if h.status == string(revguard.StatusConfirmed) && !h.unknown {
			soldMin += q
		}
		if contains(want, string(revguard.StatusConfirmed)) {
			soldMax += q
		}
		if len(want) == 1 && want[0] == string(revguard.StatusHeld) {
			heldMin += q
		}
		if contains(want, string(revguard.StatusHeld)) {
			heldMax += q
		}
	}
	heldMax += an.unresolved
	switch {
	case final.Sold < soldMin || final.Sold > soldMax:
		return fail(CheckCounts, "sold %d, but the acknowledged confirms add up to %s", final.Sold, bounds(soldMin, soldMax))
	case final.Held < heldMin || final.Held > heldMax:
		return fail(CheckCounts, "held %d, but the acknowledged holds still running add up to %s", final.Held, bounds(heldMin, heldMax))
	}
	return pass(CheckCounts, "%d samples and the final read consistent: available %d, held %d, sold %d of %d",
		samples, final.Available, final.Held, final.Sold, final.Stock)
}

func bounds(lo, hi int64) string {
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("between %d and %d", lo, hi)
}

// finish reads the SKU, waits for the ledger and fills in the report.
func (sl *sale) finish(ctx context.Context, rep *Report) {
	an := newAnalysis(sl.s, sl.holds, sl.attempts)

	final, at, err := sl.finalSKU(ctx)
	var counts Check
	if err != nil {
		counts = fail(CheckCounts, "could not read the sku at the end: %v", err)
	} else {
		counts = an.checkCounts(final, at, sl.samples, sl.badSamp)
		rep.SKU = &SKUState{Stock: final.Stock, Available: final.Available, Held: final.Held, Sold: final.Sold}
	}
	ledger := sl.waitLedger(ctx, an, rep)

	rep.Latency, rep.Outcomes = sl.rec.summary()
	rep.Requests = sl.rec.requests
	if rep.SaleSeconds > 0 {
		rep.Throughput = float64(rep.Requests) / rep.SaleSeconds
		for _, l := range rep.Latency {
			if l.Op == opReserve {
				rep.ReserveThroughput = float64(l.Count) / rep.SaleSeconds
				rep.SoldOut = sl.soldOutSplit(l.Count, rep.SaleSeconds)
			}
		}
	}
	rep.Sale = summarizeSale(an, at, sl.ledger)
	rep.Checks = []Check{an.checkOversell(), an.checkDemand(), an.checkLimit(), an.checkBots(),
		ledger, counts, an.checkAnswers(rep.Outcomes), an.checkHumans()}
}

// soldOutSplit parts the sale's reserves answers (n in total, over secs) at the first
// sold_out refusal, or returns nil when there was none.
func (sl *sale) soldOutSplit(n int64, secs float64) *SoldOutSplit {
	sl.rec.mu.Lock()
	at, before := sl.rec.firstSoldOut, sl.rec.beforeSold
	sl.rec.mu.Unlock()
	if at.IsZero() {
		return nil
	}
	so := &SoldOutSplit{AtSeconds: max(at.Sub(sl.start).Seconds(), 0), Before: before, After: n - before}
	if so.AtSeconds > 0 {
		so.BeforePerSec = float64(so.Before) / so.AtSeconds
	}
	if d := secs - so.AtSeconds; d > 0 {
		so.AfterPerSec = float64(so.After) / d
	}
	return so
}

// finalSKU reads the SKU after the sale, retrying briefly.
func (sl *sale) finalSKU(ctx context.Context) (skuJSON, time.Time, error) {
	var err error
	for try := 0; try < 5; try++ {
		var sku skuJSON
		var a answer
		sku, a, err = sl.c.getSKU(ctx, sl.s.SKU)
		if err == nil {
			return sku, a.date, nil
		}
		if !sleepCtx(ctx, backoff(a, try)) {
			break
		}
	}
	return skuJSON{}, time.Time{}, err
}

// waitLedger reads the SKU's orders until they match the acknowledged holds or
// Runner.LedgerWait has passed.
func (sl *sale) waitLedger(ctx context.Context, an *analysis, rep *Report) Check {
	wait := sl.r.LedgerWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	t0 := sl.c.now()
	var last string
	for polls := 1; ; polls++ {
		sl.progressf("waiting for the ledger (%d reads)", polls)
		r0 := sl.c.now()
		items, at, err := sl.c.orders(ctx, sl.s.SKU)
		sl.rec.recordLatency(opOrders, sl.c.now().Sub(r0))
		if err != nil {
			last = "could not list the orders: " + err.Error()
		} else if last = compareLedger(an.holds, an.attempts, items, at); last == "" {
			sl.progressEnd()
			sl.ledger = make(map[string]string, len(items))
			for _, it := range items {
				sl.ledger[it.ID] = it.Status
			}
			rep.Ledger = &LedgerState{Items: len(items), CaughtUpSeconds: sl.c.now().Sub(t0).Seconds(), Reads: polls}
			return pass(CheckLedger, "%d reservations, each acknowledged once and in its final status, after %.1fs",
				len(items), sl.c.now().Sub(t0).Seconds())
		}
		if sl.c.now().Sub(t0) >= wait || !sleepCtx(ctx, sl.every()) {
			sl.progressEnd()
			return fail(CheckLedger, "after waiting %s: %s", wait, last)
		}
	}
}
