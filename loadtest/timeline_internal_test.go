package loadtest

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 123_000_000, time.UTC)

// at is t0 plus n milliseconds; never is the zero time (no end, or no bound).
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

var never time.Time

func TestTimeline(t *testing.T) {
	type query struct {
		lo, hi time.Time
		want   int64
	}
	for _, tc := range []struct {
		name    string
		spans   []span
		peak    int64
		peakAt  time.Time
		queries []query
	}{
		{name: "Empty", queries: []query{{never, never, 0}, {at(0), at(10), 0}}},
		{
			name:   "Overlap",
			spans:  []span{{at(0), at(10), 1}, {at(5), at(15), 2}}, // 1 from 0, 3 from 5, 2 from 10, 0 from 15
			peak:   3,
			peakAt: at(5),
			queries: []query{
				{never, never, 3}, {at(0), at(4), 1}, {at(11), at(20), 2}, {at(16), at(20), 0},
				{at(10), at(10), 2}, {at(-5), at(-1), 0}, {at(-5), at(0), 1}, {at(12), never, 2},
				{never, at(3), 1}, {at(4), at(5), 3},
			},
		},
		{
			name:    "ReleasedAndRetakenInOneInstant", // ends apply before starts
			spans:   []span{{at(0), at(10), 1}, {at(10), at(20), 1}},
			peak:    1,
			peakAt:  at(0),
			queries: []query{{at(10), at(10), 1}, {at(20), at(30), 0}},
		},
		{
			name:    "ForeverAndEmpty", // a confirmed hold never ends; an empty span counts nothing
			spans:   []span{{at(0), never, 2}, {at(3), at(3), 5}, {at(4), at(2), 5}},
			peak:    2,
			peakAt:  at(0),
			queries: []query{{at(100), at(200), 2}, {at(-10), at(-1), 0}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTimeline(tc.spans)
			if p, when := tl.peak(); p != tc.peak || !when.Equal(tc.peakAt) {
				t.Errorf("peak() = %d at %v, want %d at %v", p, when, tc.peak, tc.peakAt)
			}
			for _, q := range tc.queries {
				if got := tl.maxOver(q.lo, q.hi); got != q.want {
					t.Errorf("maxOver(%v, %v) = %d, want %d", q.lo, q.hi, got, q.want)
				}
			}
		})
	}
}

// TestTimelineMaxOverBrute compares maxOver with a brute-force scan on many random-ish
// spans and windows.
func TestTimelineMaxOverBrute(t *testing.T) {
	var spans []span
	for i := range 200 {
		start := (i * 37) % 500
		end := start + 1 + (i*53)%90
		sp := span{at(start), at(end), int64(1 + i%3)}
		if i%11 == 0 {
			sp.end = never
		}
		spans = append(spans, sp)
	}
	tl := newTimeline(spans)
	occAt := func(ms int) int64 { // units counting at instant ms, ends before starts
		var n int64
		for _, s := range spans {
			if !s.start.After(at(ms)) && (s.end.IsZero() || s.end.After(at(ms))) {
				n += s.qty
			}
		}
		return n
	}
	for lo := -5; lo < 620; lo += 13 {
		for _, w := range []int{0, 1, 7, 40, 300} {
			var want int64
			for ms := lo; ms <= lo+w; ms++ {
				want = max(want, occAt(ms))
			}
			if got := tl.maxOver(at(lo), at(lo+w)); got != want {
				t.Fatalf("maxOver(%d, %d) = %d, want %d", lo, lo+w, got, want)
			}
		}
	}
}
