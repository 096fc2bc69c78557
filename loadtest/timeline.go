package loadtest

import (
	"cmp"
	"slices"
	"time"
)

// span is when one acknowledged hold's units certainly counted against stock, by the
// server's clock: from start to end (zero end: still counting at the end of the sale).
// It is a lower bound of the true interval: start is the server's created_at, moved a
// second later when the server gives whole seconds only; end is released_at for a
// release and expires_at for an expiry (the units come back within one second after).
type span struct {
	start, end time.Time
	qty        int64
}

// timeline is a step function: the units that certainly counted at each instant.
type timeline struct {
	times []int64 // distinct instants in unix nanoseconds, ascending
	occ   []int64 // occ[i]: units counting from times[i] until times[i+1]
	tree  []int64 // max segment tree over occ: leaves at tree[n+i]
}

// newTimeline builds the step function of spans. At equal instants ends are applied
// before starts, so that units given back and taken again in the same instant never
// look doubled.
func newTimeline(spans []span) *timeline {
	type event struct {
		at    int64
		delta int64
	}
	events := make([]event, 0, 2*len(spans))
	for _, s := range spans {
		if !s.end.IsZero() && !s.end.After(s.start) {
			continue
		}
		events = append(events, event{s.start.UnixNano(), s.qty})
		if !s.end.IsZero() {
			events = append(events, event{s.end.UnixNano(), -s.qty})
		}
	}
	slices.SortFunc(events, func(a, b event) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.delta, b.delta))
	})
	t := &timeline{}
	var occ int64
	for i, e := range events {
		occ += e.delta
		if i+1 < len(events) && events[i+1].at == e.at {
			continue
		}
		t.times = append(t.times, e.at)
		t.occ = append(t.occ, occ)
	}
	n := len(t.occ)
	t.tree = make([]int64, 2*n)
	copy(t.tree[n:], t.occ)
	for i := n - 1; i > 0; i-- {
		t.tree[i] = max(t.tree[2*i], t.tree[2*i+1])
	}
	return t
}

// peak returns the most units that certainly counted at one instant, and when.
func (t *timeline) peak() (int64, time.Time) {
	var best int64
	var at time.Time
	for i, o := range t.occ {
		if o > best {
			best, at = o, time.Unix(0, t.times[i])
		}
	}
	return best, at
}

// maxOver returns the most units that certainly counted at any instant of [lo, hi]. A
// zero lo means since the beginning, a zero hi until the end.
func (t *timeline) maxOver(lo, hi time.Time) int64 {
	n := len(t.occ)
	first := 0 // the step in force at lo
	if !lo.IsZero() {
		l := lo.UnixNano()
		first, _ = slices.BinarySearch(t.times, l+1) // first instant after lo
		first--
	}
	var best int64
	if first < 0 {
		first = 0 // before the first instant nothing counted
	}
	last := n - 1
	if !hi.IsZero() {
		i, _ := slices.BinarySearch(t.times, hi.UnixNano()+1)
		last = i - 1
	}
	if last < first {
		if first < n && (lo.IsZero() || t.times[first] <= lo.UnixNano()) {
			return t.occ[first]
		}
		return 0
	}
	// max over occ[first..last]
	for l, r := first+n, last+n+1; l < r; l, r = l/2, r/2 {
		if l&1 == 1 {
			best = max(best, t.tree[l])
			l++
		}
		if r&1 == 1 {
			r--
			best = max(best, t.tree[r])
		}
	}
	return best
}
