package inproc

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// TestOwned checks the per-customer unit counts (a list, then a map past maxFew
// customers) against a plain map under random changes.
func TestOwned(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newSKU("x")
	want := make(map[string]int64)
	for i := range 5000 {
		c := fmt.Sprintf("c%d", rng.IntN(3+i/500)) // few customers first, then many
		n := int64(rng.IntN(3) + 1)
		if want[c] > 0 && rng.IntN(2) == 0 {
			n = -min(n, want[c])
		}
		s.addOwned(c, n)
		if want[c] += n; want[c] == 0 {
			delete(want, c)
		}
		if got := s.owned(c); got != want[c] {
			t.Fatalf("step %d: owned(%s) = %d, want %d", i, c, got, want[c])
		}
	}
	for c, n := range want {
		if got := s.owned(c); got != n {
			t.Fatalf("owned(%s) = %d, want %d", c, got, n)
		}
	}
	if s.book.many == nil {
		t.Fatal("still a list after many customers")
	}
	for c, n := range s.book.many {
		if n == 0 || want[c] != n {
			t.Fatalf("map entry %s=%d, want %d (no zero entries)", c, n, want[c])
		}
	}
	// The list form removes zero entries too.
	s = newSKU("y")
	s.addOwned("a", 2)
	s.addOwned("b", 1)
	s.addOwned("a", -2)
	if len(s.book.few) != 1 || s.owned("a") != 0 || s.owned("b") != 1 {
		t.Fatalf("list after removal: %+v", s.book.few)
	}
}

func TestHoldHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var h holdHeap
	var want []int64
	for range 2000 {
		if len(h) > 0 && rng.IntN(3) == 0 {
			sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
			if h[0].at != want[0] {
				t.Fatalf("top %d, want %d", h[0].at, want[0])
			}
			h.pop()
			want = want[1:]
			continue
		}
		at := rng.Int64N(1000)
		h.push(holdEntry{at: at})
		want = append(want, at)
	}
	if len(h) != len(want) {
		t.Fatalf("heap has %d entries, want %d", len(h), len(want))
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).UnixNano()
	prev := ""
	seen := make(map[string]bool)
	for i := range 1000 {
		id := newID(base + int64(i)*int64(time.Millisecond)).String()
		if id <= prev || seen[id] {
			t.Fatalf("id %s after %s", id, prev)
		}
		back, ok := parseID(id)
		if !ok || back.String() != id || back.Time() != uint64(base/1e6+int64(i)) {
			t.Fatalf("parseID(%s) = %v, %v", id, back, ok)
		}
		seen[id], prev = true, id
	}
	// Within one millisecond too: ids made 20 µs apart sort by creation time.
	prev = ""
	for i := range 50 {
		id := newID(base + int64(i)*20*int64(time.Microsecond)).String()
		if id <= prev {
			t.Fatalf("id %s made 20 µs after %s sorts before it", id, prev)
		}
		prev = id
	}
	for _, bad := range []string{"", "x", "01J0000000000000000000000", "81J00000000000000000000000", "01J0000000000000000000000U"} {
		if _, ok := parseID(bad); ok {
			t.Errorf("parseID(%q) accepted", bad)
		}
	}
}
