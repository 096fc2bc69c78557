package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/revenueguard/revguard"
)

// run opens the sale, lets every customer play, and returns when all are done or the
// duration is up and the requests in flight have been answered.
//
// Connections workers send the reservation attempts, each a try at a time, from a queue
// that the customers' arrivals fill in order: a customer's attempts are queued together,
// and so sent at once (a double click). A pool rather than a goroutine per attempt: a
// burst of a crowd would otherwise park one goroutine per attempt, whose stacks the
// collector scans and each of which grows its own, at a cost that the generator's
// CPU, shared with the server on a small machine, cannot spare.
func (sl *sale) run(ctx context.Context, cs []*customer) {
	sl.start = sl.c.now()
	sl.deadline = sl.start.Add(sl.s.Duration)
	stop := make(chan struct{})
	var mon sync.WaitGroup
	// The sampler is started here and exits when stop is closed.
	mon.Go(func() { sl.monitor(ctx, stop) })
	var workers sync.WaitGroup
	for range sl.s.Connections {
		// Each worker is started here and exits when the queue is closed, once every
		// attempt has its final answer.
		workers.Go(func() { sl.work(ctx) })
	}
	sl.arrive(ctx, cs)
	sl.unanswered.Wait() // every attempt answered: nothing more is queued
	close(sl.queue)
	workers.Wait()
	sl.follows.Wait()
	close(stop)
	mon.Wait()
	sl.progressEnd()
}

// job is the next try of one reservation attempt.
type job struct {
	a         *attempt
	i         int       // the attempt's index among its customer's
	arrived   time.Time // when the customer arrived
	key       string    // the idempotency key; "" for a bot's
	try       int
	ambiguous bool // an earlier try's outcome is unknown
	waited    bool // a replaying bot has waited for a spent token
}

// arrive lets the customers in at their arrival times and queues their attempts; it
// returns when the last has arrived, the duration is up or ctx ended.
func (sl *sale) arrive(ctx context.Context, cs []*customer) {
	for _, c := range cs {
		if c.arrival < 0 {
			continue // arrives after the sale is over
		}
		arrived := sl.start.Add(c.arrival)
		if !sl.sleepUntil(ctx, arrived) {
			continue
		}
		c.attempts = make([]*attempt, len(c.plans))
		c.pending.Store(int32(len(c.plans)))
		sl.unanswered.Add(len(c.plans))
		for i := range c.plans {
			j := &job{a: &attempt{cust: c, qty: sl.s.Quantity}, i: i, arrived: arrived} // bots ask what humans ask
			if !c.bot {
				j.key = c.id + "-" + strconv.Itoa(i)
			}
			c.attempts[i] = j.a
			select {
			case sl.queue <- j:
			case <-ctx.Done():
				sl.answered(ctx, j) // never sent
			}
		}
	}
}

// work sends the queued tries until the queue is closed.
func (sl *sale) work(ctx context.Context) {
	// The worker's requests take their timeouts from a context of its own, so that
	// they do not all register with (and lock) the sale's.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for j := range sl.queue {
		sl.reserve(ctx, rctx, j)
	}
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

// answered records that j's attempt has its final answer. After a customer's last one
// it follows each of the customer's holds (confirm, release or abandon) and adds the
// attempts and holds to the sale's.
func (sl *sale) answered(ctx context.Context, j *job) {
	c := j.a.cust
	if c.pending.Add(-1) == 0 {
		sl.mu.Lock()
		sl.attempts = append(sl.attempts, c.attempts...)
		for _, a := range c.attempts {
			if a.hold != nil {
				sl.holds = append(sl.holds, a.hold)
			}
		}
		sl.mu.Unlock()
		for i, a := range c.attempts {
			if a.hold != nil && c.plans[i] != planAbandon {
				// One goroutine per hold to confirm or release, started before this
				// attempt counts as answered (so before run waits for the follows); it
				// exits when that is answered, or when the sale closed before its delay.
				sl.follows.Go(func() { sl.follow(ctx, a.hold, c.plans[i]) })
			}
		}
	}
	sl.unanswered.Done()
}

// requeue queues j again once wait is closed or d has passed (or ctx ended, which the
// next try sees).
func (sl *sale) requeue(ctx context.Context, j *job, wait <-chan struct{}, d time.Duration) {
	// Started here; it exits once j is queued: the queue stays open until every attempt
	// has its final answer, and j's has not.
	go func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-wait:
		case <-t.C:
		case <-ctx.Done():
		}
		sl.queue <- j
	}()
}

// send runs one request, in a slot of sem unless it is nil, records it, and returns
// its answer and the lower bound of the server's clock when it was sent.
func (sl *sale) send(sem chan struct{}, op string, bot bool, f func() answer) (answer, time.Time) {
	if sem != nil {
		sem <- struct{}{}
		defer func() { <-sem }()
	}
	lo := sl.c.serverNow()
	t0 := sl.c.now()
	a := f()
	d := sl.c.now().Sub(t0)
	sl.rec.record(op, bot, a, d)
	return a, lo
}

// reserve sends the next try of j's attempt, with requests under rctx. The attempt is
// tried again, with the same idempotency key, when the outcome is unknown (transport
// error, 500) or the request was refused for load (429, 503): a retry of a request that
// did reserve returns that reservation. A replaying bot first waits, briefly and off the
// workers, for a human's token to be spent.
func (sl *sale) reserve(ctx, rctx context.Context, j *job) {
	a, c := j.a, j.a.cust
	if ctx.Err() != nil { // the run is interrupted: what is queued is not sent
		a.unresolved = j.ambiguous
		sl.answered(ctx, j)
		return
	}
	if c.replay && !j.waited {
		j.waited = true
		select {
		case <-sl.spentCh:
		default:
			sl.requeue(ctx, j, sl.spentCh, min(sl.deadline.Sub(sl.c.now()), replayWait))
			return
		}
	}
	token := sl.token(j)
	ans, lo := sl.send(nil, opReserve, c.bot, func() answer {
		return sl.c.reserve(rctx, sl.s.SKU, c.session, token, j.key, a.qty)
	})
	a.lo = lo
	if j.i == 0 && j.try == 0 {
		sl.rec.recordLatency(opArrival, sl.c.now().Sub(j.arrived))
	}
	a.status, a.code = ans.outcome()
	a.hi = time.Time{}
	if !ans.date.IsZero() {
		a.hi = ans.date.Add(time.Second) // Date has whole seconds
	}
	retry := false
	switch {
	case ans.failed() || (ans.status >= 500 && ans.status != http.StatusServiceUnavailable):
		j.ambiguous, retry = true, true
	case ans.status == http.StatusTooManyRequests:
		retry = true // refused before the idempotency check: tells nothing
	case ans.status == http.StatusServiceUnavailable:
		j.ambiguous, retry = false, true // fail closed: nothing was reserved
	case ans.status == http.StatusCreated:
		if ans.res == nil {
			a.unresolved = true // acknowledged, but we cannot tell what
			sl.answered(ctx, j)
			return
		}
		res := *ans.res
		sl.c.sawServerTime(res.CreatedAt)
		a.hold = &hold{res: res, cust: c, status: res.Status}
		if !c.bot && !ans.replayed && token != "" {
			sl.spend(token)
		}
		sl.answered(ctx, j)
		return
	default:
		j.ambiguous = false
	}
	if !retry || c.bot || j.try >= sl.r.Retries || !sl.open(ctx) {
		a.unresolved = j.ambiguous
		sl.answered(ctx, j)
		return
	}
	d := backoff(ans, j.try)
	j.try++
	sl.requeue(ctx, j, nil, d)
}

// solveChallenges gives each human of a burst a bot-check token per attempt before the
// opening, as the crowd of a drop solves the challenge on the page before the click:
// issuing them in the sale cost the load generator, which shares its CPU with the
// server, about a tenth of its time. The first try of each attempt carries its token;
// a try after that, a fresh one.
func (sl *sale) solveChallenges(cs []*customer) {
	if sl.s.Arrival != ArrivalBurst || sl.r.Tokens == nil {
		return
	}
	sl.solved = sl.c.now() // the first token's age
	for _, c := range cs {
		if c.bot || c.arrival < 0 {
			continue
		}
		c.tokens = make([]string, len(c.plans))
		for i := range c.tokens {
			c.tokens[i] = sl.r.Tokens.Token()
		}
	}
}

// solvedFresh is how long the tokens solved before a burst are used: Turnstile's last
// 300 seconds, and a first try later than this (a long sale of a slow target) gets a
// fresh token instead.
const solvedFresh = 2 * time.Minute

// token returns the bot-check token for the next try of j's attempt: for a human, the
// one solved before the opening on its first try, a fresh one otherwise; for a
// replaying bot, a spent one once a human spent one; an invented one otherwise.
func (sl *sale) token(j *job) string {
	c, a := j.a.cust, j.a
	if !c.bot {
		if sl.r.Tokens == nil {
			return ""
		}
		if j.try == 0 && c.tokens != nil && sl.c.now().Sub(sl.solved) < solvedFresh {
			t := c.tokens[j.i]
			c.tokens[j.i] = ""
			return t
		}
		return sl.r.Tokens.Token()
	}
	if c.replay {
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
		res := ans.res
		switch {
		case res == nil:
			anomaly("200 with an undecodable reservation: %s", ans.detail)
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
