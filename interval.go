package revguard

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Interval is a stretch of time during which Quantity units of SKU counted against its
// stock for reservation ReservationID: from From (included) until Until (excluded). A
// zero Until means no end. An interval whose Until is not after its From is empty.
type Interval struct {
	SKU           string
	ReservationID string
	Quantity      int64
	From, Until   time.Time
}

// HeldIntervals appends to dst the intervals during which the units of r counted
// against its SKU's stock, as r records them:
//
//   - held: from CreatedAt until ExpiresAt (unless confirmed first, it expires then);
//   - released: from CreatedAt until ReleasedAt;
//   - expired: from CreatedAt until ExpiresAt;
//   - confirmed before ExpiresAt: from CreatedAt on, with no end;
//   - confirmed at or after ExpiresAt (a revived hold, whose units were taken again):
//     held from CreatedAt until ExpiresAt, then sold from ConfirmedAt on.
//
// A hold is confirmed before its deadline or not at all (at the deadline it expires),
// so a ConfirmedAt at or after ExpiresAt marks a revive. A status it does not know
// counts from CreatedAt on, with no end.
func HeldIntervals(dst []Interval, r Reservation) []Interval {
	iv := Interval{SKU: r.SKU, ReservationID: r.ID, Quantity: r.Quantity, From: r.CreatedAt}
	switch r.Status {
	case StatusHeld, StatusExpired:
		iv.Until = r.ExpiresAt
	case StatusReleased:
		iv.Until = r.ReleasedAt
	case StatusConfirmed:
		if !r.ConfirmedAt.IsZero() && !r.ConfirmedAt.Before(r.ExpiresAt) {
			iv.Until = r.ExpiresAt
			dst = append(dst, iv)
			iv.From, iv.Until = r.ConfirmedAt, time.Time{}
		}
	}
	return append(dst, iv)
}

// StockChange is a SKU's stock from Time on, until its next change. Before its first
// change a SKU's stock is 0.
type StockChange struct {
	SKU   string
	Time  time.Time
	Stock int64
}

// Overlap is an instant at which more units of a SKU counted as held or sold than its
// stock.
type Overlap struct {
	SKU   string
	At    time.Time
	Units int64 // held or sold at At
	Stock int64 // in force at At

	// Reservations are the ids of the intervals in force at At, the latest begun
	// first: those that began at At come first.
	Reservations []string
}

// String describes o in one line, naming at most ten reservations.
func (o *Overlap) String() string {
	const show = 10
	ids := strings.Join(o.Reservations[:min(len(o.Reservations), show)], ", ")
	if more := len(o.Reservations) - show; more > 0 {
		ids += fmt.Sprintf(" and %d more", more)
	}
	return fmt.Sprintf("SKU %s: %d units held or sold at %s, stock %d: reservations %s",
		o.SKU, o.Units, o.At.UTC().Format(time.RFC3339Nano), o.Stock, ids)
}

// CheckHeldWithinStock reports the first instant at which the units that reservations
// record as held or sold (HeldIntervals) exceed the stock in force, or nil when there is
// none. stock is every SKU's history of stock settings; changes of one SKU at the same
// Time take effect in slice order (the last one is in force).
//
// The order history must pass it: a serialisation point takes units only when they
// are free, and times its changes in the order it applies them, so at every instant
// the record shows no more units taken than the stock.
func CheckHeldWithinStock(reservations []Reservation, stock []StockChange) *Overlap {
	ivs := make([]Interval, 0, len(reservations))
	for _, r := range reservations {
		ivs = HeldIntervals(ivs, r)
	}
	return CheckIntervals(ivs, stock)
}

// CheckIntervals reports the earliest instant at which the intervals of a SKU in force
// sum to more units than the SKU's stock in force, or nil when there is none. The state
// at an instant is the one after every interval ending or beginning at it and every
// stock change at it. Ties between SKUs go to the SKU whose id sorts first.
func CheckIntervals(intervals []Interval, stock []StockChange) *Overlap {
	type sweep struct {
		at    int64
		delta int64 // units in force: + at a start, - at an end
		stock int64 // the new stock, for a stock change
		kind  uint8 // kindUnits or kindStock
	}
	const (
		kindUnits = iota
		kindStock
	)
	bySKU := make(map[string][]sweep)
	for _, iv := range intervals {
		from, until := instant(iv.From), endInstant(iv.Until)
		if until <= from {
			continue
		}
		ev := bySKU[iv.SKU]
		ev = append(ev, sweep{at: from, delta: iv.Quantity})
		if until != math.MaxInt64 {
			ev = append(ev, sweep{at: until, delta: -iv.Quantity})
		}
		bySKU[iv.SKU] = ev
	}
	for _, c := range stock {
		if ev, ok := bySKU[c.SKU]; ok {
			bySKU[c.SKU] = append(ev, sweep{at: instant(c.Time), stock: c.Stock, kind: kindStock})
		}
	}

	var first *Overlap
	var firstAt int64
	for sku, ev := range bySKU {
		slices.SortStableFunc(ev, func(a, b sweep) int { return cmp.Compare(a.at, b.at) })
		var units, inStock int64
		for i, e := range ev {
			if e.kind == kindStock {
				inStock = e.stock
			} else {
				units += e.delta
			}
			if i+1 < len(ev) && ev[i+1].at == e.at {
				continue // the state at e.at is the one after all its changes
			}
			if units <= inStock {
				continue
			}
			if first == nil || e.at < firstAt || (e.at == firstAt && sku < first.SKU) {
				first, firstAt = &Overlap{SKU: sku, Units: units, Stock: inStock}, e.at
			}
			break
		}
	}
	if first == nil {
		return nil
	}
	first.At = instantTime(firstAt)
	first.Reservations = inForce(intervals, first.SKU, firstAt)
	return first
}

// inForce returns the ids of sku's intervals in force at the instant at, the latest
// begun first.
func inForce(intervals []Interval, sku string, at int64) []string {
	var live []Interval
	for _, iv := range intervals {
		if iv.SKU == sku && instant(iv.From) <= at && at < endInstant(iv.Until) {
			live = append(live, iv)
		}
	}
	slices.SortStableFunc(live, func(a, b Interval) int { return b.From.Compare(a.From) })
	ids := make([]string, len(live))
	for i, iv := range live {
		ids[i] = iv.ReservationID
	}
	return ids
}

// The instants of CheckIntervals are Unix nanoseconds, saturated: the zero time (and
// anything before 1678) is the earliest instant, anything after 2262 the latest.
var (
	minInstantTime = time.Unix(0, math.MinInt64+1)
	maxInstantTime = time.Unix(0, math.MaxInt64-1)
)

func instant(t time.Time) int64 {
	switch {
	case t.IsZero(), t.Before(minInstantTime):
		return math.MinInt64
	case t.After(maxInstantTime):
		return math.MaxInt64 - 1
	}
	return t.UnixNano()
}

// endInstant is instant for the end of an interval: a zero end is no end.
func endInstant(t time.Time) int64 {
	if t.IsZero() {
		return math.MaxInt64
	}
	return instant(t)
}

func instantTime(at int64) time.Time {
	if at == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, at).UTC()
}
