package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/revenueguard/revguard"
)

// run opens the sale, lets every customer play, and returns when all are done or the
// duration is up and the requests in flight have been answered.
func (sl *sale) run(ctx context.Context, cs []*customer) {
	sl.start = sl.c.now()
	sl.deadline = sl.start.Add(sl.s.Duration)
	stop := make(chan struct{})
	var mon sync.WaitGroup
	// The sampler is started here and exits when stop is closed.
	mon.Go(func() { sl.monitor(ctx, stop) })
	var wg sync.WaitGroup
	for _, c := range cs {
		if c.arrival < 0 {
			continue // arrives after the sale is over
		}
		// Each customer goroutine is started here and exits when its last step is done;
		// no step starts after the deadline or once ctx is done.
		wg.Go(func() { sl.play(ctx, c) })
	}
	wg.Wait()
	close(stop)
	mon.Wait()
	sl.progressEnd()
}

// open reports whether a new step may start now.
func (sl *sale) open(ctx context.Context) bool {
	return ctx.Err() == nil && sl.c.now().Before(sl.deadline)
}

// sleepUntil waits for t, and reports false when the sale closed first.
func (sl *sale) sleepUntil(ctx context.Context, t time.Time) bool {
	if t.After(sl.deadline) {
		return false
	}
	return sleepCtx(ctx, t.Sub(sl.c.now())) && sl.open(ctx)
}

// play is one customer's sale: arrive, fire every attempt at once, then follow each
// hold.
func (sl *sale) play(ctx context.Context, c *customer) {
	arrived := sl.start.Add(c.arrival)
	if !sl.sleepUntil(ctx, arrived) {
		return
	}
	attempts := make([]*attempt, len(c.plans))
	var wg sync.WaitGroup
	for i := range attempts {
		// One goroutine per attempt, all at once (a double click); each exits when its
		// attempt has a final answer or the sale closed.
		wg.Go(func() { attempts[i] = sl.reserve(ctx, c, i, arrived) })
	}
	wg.Wait()
	for i, a := range attempts {
		if a.hold != nil && c.plans[i] != planAbandon {
			// One goroutine per hold to confirm or release; it exits when that is
			// answered, or when the sale closed before its delay.
			wg.Go(func() { sl.follow(ctx, a.hold, c.plans[i]) })
		}
	}
	wg.Wait()
	sl.mu.Lock()
	sl.attempts = append(sl.attempts, attempts...)
	for _, a := range attempts {
		if a.hold != nil {
			sl.holds = append(sl.holds, a.hold)
		}
	}
	sl.mu.Unlock()
}

// send runs one request in a slot of sem, records it, and returns its answer and the
// lower bound of the server's clock when it was sent.
func (sl *sale) send(sem chan struct{}, op string, bot bool, f func() answer) (answer, time.Time) {
	sem <- struct{}{}
	lo := sl.c.serverNow()
	t0 := sl.c.now()
	a := f()
	d := sl.c.now().Sub(t0)
	<-sem
	sl.rec.record(op, bot, a, d)
	return a, lo
}

// reserve fires attempt i of c and retries, with the same idempotency key, when the
// outcome is unknown (transport error, 500) or the request was refused for load (429,
// 503): a retry of a request that did reserve returns that reservation.
func (sl *sale) reserve(ctx context.Context, c *customer, i int, arrived time.Time) *attempt {
	a := &attempt{cust: c, qty: sl.s.Quantity} // bots ask what humans ask
	key := ""
	if !c.bot {
		key = fmt.Sprintf("%s-%d", c.id, i)
	}
	ambiguous := false
	for try := 0; ; try++ {
		token := sl.token(ctx, c, a)
		var ans answer
		ans, a.lo = sl.send(sl.sem, opReserve, c.bot, func() answer {
			ans := sl.c.reserve(ctx, sl.s.SKU, c.session, token, key, a.qty)
			if ans.status == http.StatusCreated {
				if _, err := decodeReservation(ans.body); err != nil {
					ans.code = codeBadResponse
				}
			}
			return ans
		})
		if i == 0 && try == 0 {
			sl.rec.recordLatency(opArrival, sl.c.now().Sub(arrived))
		}
		a.status, a.code = ans.outcome()
		a.hi = time.Time{}
		if !ans.date.IsZero() {
			a.hi = ans.date.Add(time.Second) // Date has whole seconds
		}
		retry := false
		switch {
		case ans.failed() || (ans.status >= 500 && ans.status != http.StatusServiceUnavailable):
			ambiguous, retry = true, true
		case ans.status == http.StatusTooManyRequests:
			retry = true // refused before the idempotency check: tells nothing
		case ans.status == http.StatusServiceUnavailable:
			ambiguous, retry = false, true // fail closed: nothing was reserved
		case ans.status == http.StatusCreated:
			res, err := decodeReservation(ans.body)
			if err != nil {
				a.unresolved = true // acknowledged, but we cannot tell what
				return a
			}
			sl.c.sawServerTime(res.CreatedAt)
			a.hold = &hold{res: res, cust: c, status: res.Status}
			if !c.bot && ans.header.Get("Idempotent-Replayed") != "true" && token != "" {
				sl.spend(token)
			}
			return a
		default:
			ambiguous = false
		}
		if !retry || c.bot || try >= sl.r.Retries || !sl.open(ctx) || !sleepCtx(ctx, backoff(ans, try)) {
			a.unresolved = ambiguous
			return a
		}
	}
}

// token returns the bot-check token for the next try of a: a fresh one for a human, an
// invented or a spent one for a bot.
func (sl *sale) token(ctx context.Context, c *customer, a *attempt) string {
	if !c.bot {
		if sl.r.Tokens == nil {
			return ""
		}
		return sl.r.Tokens.Token()
	}
	if c.replay {
		// Wait briefly, within the sale, for a human's token to be spent; with none,
		// the bot invents one.
		wait := min(sl.deadline.Sub(sl.c.now()), replayWait)
		select {
		case <-sl.spentCh:
		case <-ctx.Done():
		case <-time.After(wait):
		}
		sl.mu.Lock()
		defer sl.mu.Unlock()
		if n := len(sl.spent); n > 0 {
			a.replayed = true
			return sl.spent[sl.rng.IntN(n)]
		}
	}
	return "bot-" + randomHex(16)
}

// replayWait bounds how long a replaying bot waits for a spent token.
const replayWait = 2 * time.Second

// spend remembers a token that a human's 201 certainly spent at the verifier.
func (sl *sale) spend(token string) {
	sl.mu.Lock()
	sl.spent = append(sl.spent, token)
	sl.mu.Unlock()
	sl.spentOnce.Do(func() { close(sl.spentCh) })
}

// follow confirms or releases h after the scenario's delay, retrying while the outcome
// is unknown (confirming and releasing are idempotent).
func (sl *sale) follow(ctx context.Context, h *hold, p plan) {
	delay, op := sl.s.ConfirmDelay, opConfirm
	if p == planRelease {
		delay, op = sl.s.ReleaseDelay, opRelease
	}
	if !sl.sleepUntil(ctx, sl.c.now().Add(delay)) {
		return // the sale closed: the hold is abandoned
	}
	h.tried = p
	for try := 0; ; try++ {
		ans, lo := sl.send(sl.followSem, op, false, func() answer {
			if p == planConfirm {
				return sl.c.confirm(ctx, h.cust.session, h.res.ID, "lt-order-"+h.res.ID)
			}
			return sl.c.release(ctx, h.cust.session, h.res.ID)
		})
		if try == 0 {
			h.triedLo = lo
		}
		if !ans.failed() && ans.status < 500 && ans.status != http.StatusTooManyRequests {
			h.unknown = false
			sl.settle(h, p, ans)
			return
		}
		h.unknown = h.unknown || ans.failed() || ans.status >= 500 && ans.status != http.StatusServiceUnavailable
		if try >= sl.r.Retries || ctx.Err() != nil || !sleepCtx(ctx, backoff(ans, try)) {
			return
		}
	}
}

// settle records the definitive answer to a confirm or release of h, and any answer
// that contradicts what the customer knows.
func (sl *sale) settle(h *hold, p plan, ans answer) {
	want, verb := revguard.StatusConfirmed, "confirm"
	if p == planRelease {
		want, verb = revguard.StatusReleased, "release"
	}
	anomaly := func(format string, args ...any) {
		h.anomalies = append(h.anomalies, fmt.Sprintf("%s of %s: ", verb, h.res.ID)+fmt.Sprintf(format, args...))
	}
	switch {
	case ans.status == http.StatusOK:
		res, err := decodeReservation(ans.body)
		switch {
		case err != nil:
			anomaly("200 with an undecodable reservation: %v", err)
			h.unknown = true
		case res.ID != h.res.ID || res.Status != string(want):
			anomaly("200 with reservation %s in status %q", res.ID, res.Status)
			h.unknown = true
		default:
			h.status = res.Status
			if res.ReleasedAt != nil {
				h.endedAt = *res.ReleasedAt
			} else if p == planRelease {
				anomaly("released without released_at")
			}
		}
	case ans.code == revguard.CodeHoldExpired:
		h.status = string(revguard.StatusExpired)
	default:
		anomaly("status %d %s: %s", ans.status, ans.code, ans.detail)
	}
}

// monitor samples the SKU every tick until stop is closed, checks its invariant, and
// draws the progress line.
func (sl *sale) monitor(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(sl.every())
	defer t.Stop()
	last := sl.c.now()
	var lastReq int64
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t0 := sl.c.now()
		sku, a, err := sl.c.getSKU(ctx, sl.s.SKU)
		sl.rec.record(opSKU, false, a, sl.c.now().Sub(t0))
		sl.mu.Lock()
		if err == nil {
			sl.samples++
			if msg := skuInvariant(sku, sl.s.Stock); msg != "" && len(sl.badSamp) < 10 {
				sl.badSamp = append(sl.badSamp, msg)
			}
			sl.last = sku
		}
		cur := sl.last
		sl.mu.Unlock()
		tk := sl.rec.tick()
		now := sl.c.now()
		rate := float64(tk.requests-lastReq) / now.Sub(last).Seconds()
		last, lastReq = now, tk.requests
		sl.progressf("sale %4.1fs  %7.0f req/s  reserved %d/%d  sold out %d  errors %d  p99 %s",
			now.Sub(sl.start).Seconds(), rate, cur.Held+cur.Sold, sl.s.Stock, tk.soldOut, tk.errors,
			tk.p99.Round(10*time.Microsecond))
	}
}

// skuInvariant describes how s breaks available + held + sold == stock with each term
// non-negative, or returns "".
func skuInvariant(s skuJSON, stock int64) string {
	switch {
	case s.Stock != stock:
		return fmt.Sprintf("stock %d, set to %d", s.Stock, stock)
	case s.Available < 0 || s.Held < 0 || s.Sold < 0:
		return fmt.Sprintf("negative count: available %d, held %d, sold %d", s.Available, s.Held, s.Sold)
	case s.Available+s.Held+s.Sold != s.Stock:
		return fmt.Sprintf("available %d + held %d + sold %d != stock %d", s.Available, s.Held, s.Sold, s.Stock)
	}
	return ""
}
