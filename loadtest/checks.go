package loadtest

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
)

// Check is the verdict of one of the sale's checks.
type Check struct {
	Name    string `json:"name"`  // stable: no-oversell, sold-to-demand, customer-limit, ...
	Title   string `json:"title"` // what it asserts
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"` // nothing to check (OK is true)
	Detail  string `json:"detail"`
}

// The checks, in report order.
const (
	CheckOversell = "no-oversell"
	CheckDemand   = "sold-to-demand"
	CheckLimit    = "customer-limit"
	CheckBots     = "no-bot-admitted"
	CheckLedger   = "ledger"
	CheckCounts   = "sku-counts"
	CheckAnswers  = "api-answers"
	CheckHumans   = "humans-served"
)

var checkTitles = map[string]string{
	CheckOversell: "units held or sold never exceed the stock",
	CheckDemand:   "units reserved = min(stock, demand): no sold-out refusal while units were free",
	CheckLimit:    "no customer over the per-customer limit",
	CheckBots:     "no bot admitted: a bad or replayed token never gets a 201",
	CheckLedger:   "the ledger equals the acknowledged reservations, each once, in its final status",
	CheckCounts:   "GET /v1/skus/{sku} counts consistent with the acknowledged changes",
	CheckAnswers:  "answers follow the API: no 500, no malformed answer, no contradiction",
	CheckHumans:   "every human's attempt ends by the sale's rules (a hold, sold out, over the limit), not refused by the bot check, a rate limit or an outage",
}

func pass(name, format string, args ...any) Check {
	return Check{Name: name, Title: checkTitles[name], OK: true, Detail: fmt.Sprintf(format, args...)}
}

func fail(name, format string, args ...any) Check {
	return Check{Name: name, Title: checkTitles[name], Detail: fmt.Sprintf(format, args...)}
}

func skip(name, format string, args ...any) Check {
	c := pass(name, format, args...)
	c.Skipped = true
	return c
}

// wholeSecond reports whether t looks truncated to the second: the server gives no
// finer precision, so the true instant may be up to a second later.
func wholeSecond(t time.Time) bool { return t.Nanosecond() == 0 }

// slack is the precision allowance of a server timestamp.
func slack(t time.Time) time.Duration {
	if wholeSecond(t) {
		return time.Second
	}
	return 0
}

// lowerSpan is when h's units certainly counted: from created_at (a second later if the
// server gives whole seconds) until the earliest instant they can have come back.
func (h *hold) lowerSpan() span {
	sp := span{start: h.res.CreatedAt.Add(slack(h.res.CreatedAt)), qty: h.res.Quantity}
	switch {
	case h.status == string(revguard.StatusConfirmed):
	case h.status == string(revguard.StatusReleased):
		sp.end = h.endedAt
		if sp.end.IsZero() {
			sp.end = h.triedLo // released_at was missing: the release was sent after this
		}
		if sp.end.IsZero() {
			sp.end = sp.start // nothing certain
		}
	case h.unknown && h.tried == planRelease:
		sp.end = h.triedLo
		if sp.end.IsZero() {
			sp.end = sp.start
		}
	default: // expired, abandoned, or a confirm of unknown outcome
		sp.end = h.res.ExpiresAt
	}
	return sp
}

// upperSpan is when h's units may have counted: from created_at (a second earlier if
// whole seconds) until the latest instant they can have come back: released_at, or a
// second after expires_at (docs/api.md: expired holds return their units within one second).
func (h *hold) upperSpan() span {
	sp := span{start: h.res.CreatedAt.Add(-slack(h.res.CreatedAt)), qty: h.res.Quantity}
	switch {
	case h.unknown, h.status == string(revguard.StatusConfirmed):
	case h.status == string(revguard.StatusReleased) && !h.endedAt.IsZero():
		sp.end = h.endedAt.Add(slack(h.endedAt))
	case h.status == string(revguard.StatusReleased):
		// released_at missing: unknown end
	default: // expired or abandoned
		sp.end = h.res.ExpiresAt.Add(time.Second + slack(h.res.ExpiresAt))
	}
	return sp
}

// analysis is the record of a sale, ready for the checks.
type analysis struct {
	s          Scenario
	holds      []*hold
	attempts   []*attempt
	unresolved int64 // units of attempts whose outcome is unknown
	lower      *timeline
	upper      *timeline
}

func newAnalysis(s Scenario, holds []*hold, attempts []*attempt) *analysis {
	an := &analysis{s: s, holds: holds, attempts: attempts}
	var lo, up []span
	for _, h := range holds {
		lo = append(lo, h.lowerSpan())
		up = append(up, h.upperSpan())
	}
	for _, a := range attempts {
		if a.unresolved {
			an.unresolved += a.qty
		}
	}
	an.lower, an.upper = newTimeline(lo), newTimeline(up)
	return an
}

// checkOversell: at no instant did the acknowledged holds certainly count more units
// than the stock. A hold certainly counts from its created_at until its released_at,
// its expires_at, or forever once confirmed (lowerSpan). It is the check revguard
// verify runs on a ledger, revguard.CheckIntervals, on what the answers said.
func (an *analysis) checkOversell() Check {
	const sale = "sale" // every hold is of the sale's one SKU
	ivs := make([]revguard.Interval, len(an.holds))
	for i, h := range an.holds {
		sp := h.lowerSpan()
		ivs[i] = revguard.Interval{SKU: sale, ReservationID: h.res.ID, Quantity: sp.qty, From: sp.start, Until: sp.end}
	}
	if o := revguard.CheckIntervals(ivs, []revguard.StockChange{{SKU: sale, Stock: an.s.Stock}}); o != nil {
		return fail(CheckOversell, "%d units were held or sold at %s by acknowledged reservations: the stock is %d; in force then, latest first: %s",
			o.Units, o.At.UTC().Format(time.RFC3339Nano), o.Stock, strings.Join(o.Reservations[:min(len(o.Reservations), 5)], ", "))
	}
	peak, _ := an.lower.peak()
	return pass(CheckOversell, "peak %d of %d units held or sold at once", peak, an.s.Stock)
}

// checkDemand: every 409 sold_out was legitimate. A refusal of q units is wrong when,
// throughout the window in which the server can have decided it (from a second before
// the latest server time the client had seen when it sent the request, as the sold-out
// fast path may be a second stale, to a second after the answer's Date), at most
// stock - q units may have counted: the acknowledged holds at their latest ends plus
// every unit of an attempt whose outcome is unknown. When no units came back during
// the sale and every attempt asked the same q, this is the count
// reserved == min(demand, stock - stock mod q), demand being the units asked by the
// attempts answered 201 or sold_out; that count is checked too. Server times of
// several targets are compared as one clock: their clocks must agree well within the
// second of slack (one machine, or NTP).
func (an *analysis) checkDemand() Check {
	var demand, taken, refusals int64
	var wrong []*attempt
	var lastAnswer time.Time
	for _, a := range an.attempts {
		if a.hi.After(lastAnswer) {
			lastAnswer = a.hi
		}
		switch {
		case a.status == 201 && a.hold != nil:
			demand += a.qty
			taken += a.hold.res.Quantity
		case a.code == string(revguard.CodeSoldOut):
			demand += a.qty
			refusals++
			lo := a.lo
			if !lo.IsZero() {
				lo = lo.Add(-time.Second)
			}
			if an.upper.maxOver(lo, a.hi)+an.unresolved <= an.s.Stock-a.qty {
				wrong = append(wrong, a)
			}
		}
	}
	if len(wrong) > 0 {
		a := wrong[0]
		used := an.upper.maxOver(a.lo.Add(-time.Second), a.hi) + an.unresolved
		return fail(CheckDemand, "%d of %d sold_out refusals came while units were free: e.g. %d units refused to %s while at most %d of %d were taken (server time %s to %s)",
			len(wrong), refusals, a.qty, a.cust.id, used, an.s.Stock, fmtTime(a.lo.Add(-time.Second)), fmtTime(a.hi))
	}
	returned := false
	for _, h := range an.holds {
		if sp := h.lowerSpan(); !sp.end.IsZero() && (lastAnswer.IsZero() || sp.end.Before(lastAnswer)) {
			returned = true
			break
		}
	}
	if !returned && an.unresolved == 0 {
		q := an.s.Quantity
		want := min(demand, an.s.Stock-an.s.Stock%q)
		if taken != want {
			return fail(CheckDemand, "reserved %d units, want min(demand %d, stock %d) = %d", taken, demand, an.s.Stock, want)
		}
		return pass(CheckDemand, "reserved %d units = min(demand %d, stock %d); %d sold-out refusals", taken, demand, an.s.Stock, refusals)
	}
	if refusals == 0 {
		return pass(CheckDemand, "reserved %d units against demand %d and stock %d; no sold-out refusal", taken, demand, an.s.Stock)
	}
	return pass(CheckDemand, "reserved %d units in all against demand %d and stock %d, units coming back by release or expiry; each of %d sold-out refusals came while fewer units than asked were free",
		taken, demand, an.s.Stock, refusals)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("15:04:05.000")
}

// checkLimit: at no instant did one customer's acknowledged holds certainly count more
// units than the limit.
func (an *analysis) checkLimit() Check {
	by := make(map[*customer][]span)
	for _, h := range an.holds {
		by[h.cust] = append(by[h.cust], h.lowerSpan())
	}
	var over []string
	var worst int64
	for c, spans := range by {
		var total int64
		for _, sp := range spans {
			total += sp.qty
		}
		if total <= an.s.Limit {
			continue
		}
		if peak, _ := newTimeline(spans).peak(); peak > an.s.Limit {
			over = append(over, fmt.Sprintf("%s held %d", c.id, peak))
			worst = max(worst, peak)
		}
	}
	if len(over) > 0 {
		slices.Sort(over)
		return fail(CheckLimit, "%d customers went over the limit of %d (up to %d units): %s",
			len(over), an.s.Limit, worst, strings.Join(over[:min(len(over), 3)], ", "))
	}
	return pass(CheckLimit, "%d customers with holds, none over %d units", len(by), an.s.Limit)
}

// checkBots: no attempt by a bot got a 201. It proves something only when bots reached
// the bot check: one refused sold_out before it tells nothing.
func (an *analysis) checkBots() Check {
	var tried, admitted, replayedAdmitted, replayed, caught int
	for _, a := range an.attempts {
		if !a.cust.bot {
			continue
		}
		tried++
		if a.replayed {
			replayed++
		}
		switch {
		case a.status == 201:
			admitted++
			if a.replayed {
				replayedAdmitted++
			}
		case a.code == string(revguard.CodeBotCheckFailed):
			caught++
		}
	}
	switch {
	case tried == 0:
		return skip(CheckBots, "no bot in this scenario")
	case admitted > 0:
		return fail(CheckBots, "%d of %d bot attempts got a 201 (%d with replayed tokens, %d with invented ones): is the target's bot check on, and pointed at this verifier?",
			admitted, tried, replayedAdmitted, admitted-replayedAdmitted)
	case caught == 0:
		return skip(CheckBots, "none of %d bot attempts reached the bot check (all refused before it, e.g. sold out)", tried)
	}
	return pass(CheckBots, "0 of %d bot attempts admitted (%d carried spent tokens): %d refused by the bot check, %d before it",
		tried, replayed, caught, tried-caught)
}

// checkAnswers: no 500, no malformed answer, no answer contradicting what the customer
// knows (e.g. a confirm of one's own hold answered 404 or hold_released).
// checkHumans: every human customer's reservation attempt that was answered ended by
// the sale's rules: a hold, sold_out, limit_exceeded or sale_not_open. A human refused
// otherwise (the bot check, or a 503 still there after the retries) is a sale the
// deployment did not serve, whatever the other checks say: a sale in which every buyer
// is refused sells nothing and oversells nothing. A 429 counts only for a customer
// who got no answer by the rules at all: one whose burst of attempts (--over-limit)
// ran past the server's per-customer rate was served, then limited, as it should be.
// Attempts whose outcome is unknown are the other checks' business.
func (an *analysis) checkHumans() Check {
	ruled := func(a *attempt) bool {
		switch revguard.Code(a.code) {
		case revguard.CodeSoldOut, revguard.CodeLimitExceeded, revguard.CodeSaleNotOpen:
			return true
		}
		return a.status == http.StatusCreated
	}
	served := map[*customer]bool{}
	for _, a := range an.attempts {
		if ruled(a) {
			served[a.cust] = true
		}
	}
	var humans, refused int64
	why := map[string]int64{}
	for _, a := range an.attempts {
		if a.cust.bot || a.unresolved || a.status == 0 {
			continue
		}
		humans++
		if ruled(a) || a.status == http.StatusTooManyRequests && served[a.cust] {
			continue
		}
		refused++
		why[fmt.Sprintf("%d %s", a.status, a.code)]++
	}
	if refused > 0 {
		keys := slices.Sorted(maps.Keys(why))
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%d × %s", why[k], k)
		}
		return fail(CheckHumans, "%d of %d human attempts refused outside the sale's rules: %s", refused, humans, strings.Join(parts, ", "))
	}
	return pass(CheckHumans, "%d human attempts, each a hold or a refusal by the sale's rules", humans)
}

// checkAnswers: no answer a client could not use: no 5xx but 503, nothing malformed,
// no contradiction between the answers about a hold.
func (an *analysis) checkAnswers(outcomes []Outcome) Check {
	var internal, malformed int64
	for _, o := range outcomes {
		switch {
		case o.Code == string(codeBadResponse):
			malformed += o.Count
		case o.Status >= 500 && o.Status != 503:
			internal += o.Count
		}
	}
	var contra []string
	for _, h := range an.holds {
		contra = append(contra, h.anomalies...)
	}
	if internal+malformed > 0 || len(contra) > 0 {
		msg := fmt.Sprintf("%d answers 5xx (not 503), %d malformed, %d contradictions", internal, malformed, len(contra))
		if len(contra) > 0 {
			msg += ": " + strings.Join(contra[:min(len(contra), 3)], "; ")
		}
		return fail(CheckAnswers, "%s", msg)
	}
	return pass(CheckAnswers, "every answer well-formed and consistent")
}
