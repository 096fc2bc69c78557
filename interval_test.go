package revguard_test

import (
	"encoding/binary"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// at is a test instant: second s of 2026-12-05 10:00 UTC.
func at(s int) time.Time { return time.Date(2026, 12, 5, 10, 0, s, 0, time.UTC) }

func TestHeldIntervals(t *testing.T) {
	base := revguard.Reservation{ID: "r", SKU: "k", Quantity: 2, CreatedAt: at(10), ExpiresAt: at(20)}
	with := func(st revguard.Status, f func(*revguard.Reservation)) revguard.Reservation {
		r := base
		r.Status = st
		if f != nil {
			f(&r)
		}
		return r
	}
	iv := func(from, until time.Time) revguard.Interval {
		return revguard.Interval{SKU: "k", ReservationID: "r", Quantity: 2, From: from, Until: until}
	}
	tests := []struct {
		name string
		r    revguard.Reservation
		want []revguard.Interval
	}{
		{"Held", with(revguard.StatusHeld, nil), []revguard.Interval{iv(at(10), at(20))}},
		{"Expired", with(revguard.StatusExpired, nil), []revguard.Interval{iv(at(10), at(20))}},
		{"Released", with(revguard.StatusReleased, func(r *revguard.Reservation) { r.ReleasedAt = at(15) }),
			[]revguard.Interval{iv(at(10), at(15))}},
		{"Confirmed", with(revguard.StatusConfirmed, func(r *revguard.Reservation) { r.ConfirmedAt = at(19) }),
			[]revguard.Interval{iv(at(10), time.Time{})}},
		{"ConfirmedRevived", with(revguard.StatusConfirmed, func(r *revguard.Reservation) { r.ConfirmedAt = at(30) }),
			[]revguard.Interval{iv(at(10), at(20)), iv(at(30), time.Time{})}},
		{"ConfirmedRevivedAtTheDeadline", with(revguard.StatusConfirmed, func(r *revguard.Reservation) { r.ConfirmedAt = at(20) }),
			[]revguard.Interval{iv(at(10), at(20)), iv(at(20), time.Time{})}},
		{"UnknownStatusCountsForever", with("bogus", nil), []revguard.Interval{iv(at(10), time.Time{})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := revguard.HeldIntervals(nil, tt.r); !slices.Equal(got, tt.want) {
				t.Errorf("HeldIntervals(%+v)\n got %+v\nwant %+v", tt.r, got, tt.want)
			}
		})
	}
}

func TestCheckHeldWithinStock(t *testing.T) {
	type res = revguard.Reservation
	held := func(id string, qty int64, from, until int) res {
		return res{ID: id, SKU: "k", Quantity: qty, Status: revguard.StatusHeld, CreatedAt: at(from), ExpiresAt: at(until)}
	}
	expired := func(id string, qty int64, from, until int) res {
		r := held(id, qty, from, until)
		r.Status = revguard.StatusExpired
		return r
	}
	released := func(id string, qty int64, from, until int) res {
		r := held(id, qty, from, from+600)
		r.Status, r.ReleasedAt = revguard.StatusReleased, at(until)
		return r
	}
	confirmed := func(id string, qty int64, from, conf int) res {
		r := held(id, qty, from, from+10)
		r.Status, r.ConfirmedAt = revguard.StatusConfirmed, at(conf)
		return r
	}
	stock := func(n int64, s int) revguard.StockChange {
		return revguard.StockChange{SKU: "k", Time: at(s), Stock: n}
	}
	tests := []struct {
		name  string
		rs    []res
		stock []revguard.StockChange
		want  *revguard.Overlap // Reservations compared as listed
	}{
		{name: "OK_Empty"},
		{name: "OK_Full", rs: []res{held("a", 1, 1, 11), held("b", 1, 2, 12)}, stock: []revguard.StockChange{stock(2, 0)}},
		{name: "OK_TakenAgainAtTheRelease", rs: []res{released("a", 1, 1, 5), held("b", 1, 5, 15)},
			stock: []revguard.StockChange{stock(1, 0)}},
		{name: "OK_TakenAgainAtTheDeadline", rs: []res{expired("a", 1, 1, 11), held("b", 1, 11, 21)},
			stock: []revguard.StockChange{stock(1, 0)}},
		{name: "OK_Restock", rs: []res{confirmed("a", 1, 1, 2), held("b", 1, 5, 15)},
			stock: []revguard.StockChange{stock(1, 0), stock(2, 5)}},
		{name: "OK_StockLoweredToCommitted", rs: []res{confirmed("a", 1, 1, 2), released("b", 1, 2, 6)},
			stock: []revguard.StockChange{stock(3, 0), stock(1, 6)}},
		{name: "OK_SameInstantLastStockWins", rs: []res{held("a", 2, 5, 15)},
			stock: []revguard.StockChange{stock(1, 0), stock(1, 5), stock(2, 5)}},
		{name: "OK_OtherSKUsApart", rs: []res{held("a", 1, 1, 11), {ID: "x", SKU: "other", Quantity: 1, Status: revguard.StatusHeld, CreatedAt: at(1), ExpiresAt: at(11)}},
			stock: []revguard.StockChange{stock(1, 0), {SKU: "other", Time: at(0), Stock: 1}}},
		{name: "OK_RevivedAfterTheGap", rs: []res{confirmed("a", 1, 1, 30), held("b", 1, 11, 21)},
			stock: []revguard.StockChange{stock(1, 0)}},

		// The case: a hold stamped before the deadline of one whose units it took.
		{name: "Err_StampedBeforeTheDeadline", rs: []res{expired("a", 1, 1, 11), held("b", 1, 9, 19)},
			stock: []revguard.StockChange{stock(1, 0)},
			want:  &revguard.Overlap{SKU: "k", At: at(9), Units: 2, Stock: 1, Reservations: []string{"b", "a"}}},
		{name: "Err_StampedBeforeTheRelease", rs: []res{released("a", 1, 1, 8), confirmed("c", 1, 0, 1), held("b", 1, 7, 17)},
			stock: []revguard.StockChange{stock(2, 0)},
			want:  &revguard.Overlap{SKU: "k", At: at(7), Units: 3, Stock: 2, Reservations: []string{"b", "a", "c"}}},
		{name: "Err_RevivedBeforeTheGapClosed", rs: []res{confirmed("a", 1, 1, 15), held("b", 1, 12, 22)},
			stock: []revguard.StockChange{stock(1, 0)},
			want:  &revguard.Overlap{SKU: "k", At: at(15), Units: 2, Stock: 1, Reservations: []string{"a", "b"}}},
		{name: "Err_StockLoweredBelowHeld", rs: []res{held("a", 2, 1, 11)},
			stock: []revguard.StockChange{stock(2, 0), stock(1, 5)},
			want:  &revguard.Overlap{SKU: "k", At: at(5), Units: 2, Stock: 1, Reservations: []string{"a"}}},
		{name: "Err_BeforeAnyStock", rs: []res{held("a", 1, 1, 11)}, stock: []revguard.StockChange{stock(1, 2)},
			want: &revguard.Overlap{SKU: "k", At: at(1), Units: 1, Stock: 0, Reservations: []string{"a"}}},
		{name: "Err_EarliestOfTwoSKUs", rs: []res{held("a", 2, 5, 15), {ID: "x", SKU: "j", Quantity: 2, Status: revguard.StatusHeld, CreatedAt: at(3), ExpiresAt: at(13)}},
			stock: []revguard.StockChange{stock(1, 0), {SKU: "j", Time: at(0), Stock: 1}},
			want:  &revguard.Overlap{SKU: "j", At: at(3), Units: 2, Stock: 1, Reservations: []string{"x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := revguard.CheckHeldWithinStock(tt.rs, tt.stock)
			if !sameOverlap(got, tt.want) {
				t.Errorf("CheckHeldWithinStock() = %v, want %v", got, tt.want)
			}
		})
	}
}

func sameOverlap(a, b *revguard.Overlap) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.SKU == b.SKU && a.At.Equal(b.At) && a.Units == b.Units && a.Stock == b.Stock &&
		slices.Equal(a.Reservations, b.Reservations)
}

func TestOverlapString(t *testing.T) {
	o := &revguard.Overlap{SKU: "shoe", At: at(34).Add(158 * time.Millisecond), Units: 1004, Stock: 1000}
	for i := range 12 {
		o.Reservations = append(o.Reservations, "r"+strconv.Itoa(i))
	}
	want := "SKU shoe: 1004 units held or sold at 2026-12-05T10:00:34.158Z, stock 1000: reservations r0, r1, r2, r3, r4, r5, r6, r7, r8, r9 and 2 more"
	if got := o.String(); got != want {
		t.Errorf("String() =\n%q, want\n%q", got, want)
	}
}

// FuzzCheckIntervals compares CheckIntervals with a brute-force check that, at every
// instant where anything begins, ends or changes, sums the intervals in force. Each 8
// bytes of input make an interval (or, with the top bit of its first byte, a stock
// change) of one of three SKUs, on a small grid of instants so that ties are common.
func FuzzCheckIntervals(f *testing.F) {
	for _, seed := range [][]byte{
		nil,
		{0, 1, 2, 1, 0, 0, 0, 0}, // one interval, no stock
		{0x80, 0, 0, 3, 0, 0, 0, 0, 0, 1, 5, 2, 0, 0, 0, 0},                         // stock then an interval within it
		{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 1, 5, 1, 0, 0, 0, 0, 0, 3, 9, 1, 0, 0, 0, 0}, // two overlapping
		{0, 2, 2, 1, 0, 0, 0, 0, 0x80, 2, 0, 1, 0, 0, 0, 0},                         // empty interval
		{0, 0, 0, 1, 0, 0, 0, 0, 0x81, 0, 0, 0, 0, 0, 0, 0},                         // zero start, zero end
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ivs []revguard.Interval
		var stock []revguard.StockChange
		instantOf := func(b byte) time.Time {
			if b%16 == 15 {
				return time.Time{} // zero: the earliest instant, or no end
			}
			return at(int(b % 16))
		}
		for i := 0; i+8 <= len(data) && i < 8*64; i += 8 {
			rec := data[i : i+8]
			sku := "k" + strconv.Itoa(int(rec[0]&0x7f)%3)
			if rec[0]&0x80 != 0 {
				stock = append(stock, revguard.StockChange{SKU: sku, Time: instantOf(rec[1]), Stock: int64(rec[3] % 8)})
				continue
			}
			ivs = append(ivs, revguard.Interval{SKU: sku, ReservationID: "r" + strconv.Itoa(i/8),
				Quantity: 1 + int64(binary.LittleEndian.Uint16(rec[3:5])%4), From: instantOf(rec[1]), Until: instantOf(rec[2])})
		}
		got := revguard.CheckIntervals(ivs, stock)
		want := bruteOverlap(ivs, stock)
		if !sameOverlapIDs(got, want) {
			t.Fatalf("intervals %+v\nstock %+v\nCheckIntervals = %+v\nbrute force   = %+v", ivs, stock, got, want)
		}
	})
}

// bruteOverlap is the definition of CheckIntervals, evaluated at every instant.
func bruteOverlap(ivs []revguard.Interval, stock []revguard.StockChange) *revguard.Overlap {
	// The zero time is before every other instant; a zero end is no end.
	less := func(a, b time.Time) bool {
		if a.IsZero() || b.IsZero() {
			return a.IsZero() && !b.IsZero()
		}
		return a.Before(b)
	}
	leq := func(a, b time.Time) bool { return !less(b, a) }
	inForce := func(iv revguard.Interval, t time.Time) bool {
		return leq(iv.From, t) && (iv.Until.IsZero() || less(t, iv.Until))
	}
	var instants []time.Time
	for _, iv := range ivs {
		instants = append(instants, iv.From)
		if !iv.Until.IsZero() {
			instants = append(instants, iv.Until)
		}
	}
	for _, c := range stock {
		instants = append(instants, c.Time)
	}
	var best *revguard.Overlap
	for _, sku := range []string{"k0", "k1", "k2"} {
		for _, t := range instants {
			var units, inStock int64
			var found bool
			var foundAt time.Time
			for _, c := range stock {
				if c.SKU == sku && leq(c.Time, t) && (!found || leq(foundAt, c.Time)) {
					inStock, found, foundAt = c.Stock, true, c.Time
				}
			}
			var ids []string
			for _, iv := range ivs {
				if iv.SKU == sku && inForce(iv, t) {
					units += iv.Quantity
					ids = append(ids, iv.ReservationID)
				}
			}
			if units <= inStock {
				continue
			}
			if best == nil || less(t, best.At) || (t.Equal(best.At) && sku < best.SKU) {
				best = &revguard.Overlap{SKU: sku, At: t, Units: units, Stock: inStock, Reservations: ids}
			}
		}
	}
	return best
}

// sameOverlapIDs is sameOverlap with the reservations compared as sets: the brute
// force does not order them.
func sameOverlapIDs(a, b *revguard.Overlap) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := slices.Sorted(slices.Values(a.Reservations)), slices.Sorted(slices.Values(b.Reservations))
	return a.SKU == b.SKU && a.At.Equal(b.At) && a.Units == b.Units && a.Stock == b.Stock && slices.Equal(x, y)
}
