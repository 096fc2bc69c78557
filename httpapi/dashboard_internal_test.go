package httpapi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestQuantile checks the percentile estimate against hand-computed values.
func TestQuantile(t *testing.T) {
	bounds := []float64{.001, .002, .004}
	for _, tc := range []struct {
		cum  []float64
		q    float64
		want float64
		ok   bool
	}{
		{[]float64{0, 0, 0}, .5, 0, false},
		{[]float64{10, 10, 10}, .5, .0005, true}, // all in the first bucket: half way into it
		{[]float64{0, 10, 10}, .5, .0015, true},  // all in the second
		{[]float64{5, 5, 10}, .99, .00396, true}, // the top of the third
		{[]float64{10, 20, 20}, .5, .001, true},  // exactly at the first bound
	} {
		got, ok := quantile(tc.q, bounds, tc.cum)
		if ok != tc.ok || (ok && (got < tc.want-1e-9 || got > tc.want+1e-9)) {
			t.Errorf("quantile(%v, %v) = %v, %v; want %v, %v", tc.q, tc.cum, got, ok, tc.want, tc.ok)
		}
	}
}

// BenchmarkDashboardSnapshot measures one snapshot of the dashboard's stream with 1,000
// SKUs: the CPU each open dashboard takes per second.
func BenchmarkDashboardSnapshot(b *testing.B) {
	skus := make([]revguard.SKU, 1000)
	for i := range skus {
		skus[i] = revguard.SKU{ID: fmt.Sprintf("sku-%04d", i), Stock: 100, Available: 40, Held: 10, Sold: 50}
	}
	s := NewServer()
	s.Inventory, s.Ledger, s.Sessions = struct{ revguard.Inventory }{}, struct{ revguard.Ledger }{}, struct{ revguard.Sessions }{}
	s.Handler()
	for _, o := range []string{outcomeReserved, "sold_out", "limit_exceeded"} {
		s.metrics.observeReservation(o)
	}
	s.metrics.observeRequest(reserveRoute, 201, 1000)
	sm := &sampler{s: s, d: &Dashboard{SKUs: func(fn func(revguard.SKU) bool) {
		for _, k := range skus {
			if !fn(k) {
				return
			}
		}
	}}}
	var size int
	b.ReportAllocs()
	for b.Loop() {
		size = len(sm.snapshot(context.Background()))
	}
	b.ReportMetric(float64(size), "bytes/snapshot")
}

// TestFleetCounters sums the nodes' counters into counters that only grow: a node's
// first report adds nothing, a node that leaves or restarts takes nothing away, and
// the totals are the live nodes' own.
func TestFleetCounters(t *testing.T) {
	bounds := []float64{.001, .01}
	node := func(name string, created, soldOut float64, buckets ...float64) DashboardNode {
		return DashboardNode{Name: name, Stats: &NodeStats{
			Outcomes: map[string]float64{"created": created, "sold_out": soldOut}, Bounds: bounds, Buckets: buckets}}
	}
	var fc fleetCounters
	steps := []struct {
		nodes         []DashboardNode
		created, sold float64 // the fleet counters after the step
		buckets       []float64
		totalCreated  float64
	}{
		// Two nodes appear with their past: nothing counted yet.
		{[]DashboardNode{node("a", 100, 5, 90, 100), node("b", 50, 0, 50, 50)}, 0, 0, []float64{0, 0}, 150},
		// Both count on.
		{[]DashboardNode{node("a", 110, 7, 98, 110), node("b", 60, 1, 55, 60)}, 20, 3, []float64{13, 20}, 170},
		// A third appears with a large past: no spike. b restarted: nothing taken
		// away, and what it counted since its restart added.
		{[]DashboardNode{node("a", 111, 7, 99, 111), node("b", 2, 0, 2, 2), node("c", 5000, 0, 0, 5000)}, 23, 3, []float64{16, 23}, 5113},
		// b counts on from its restart; a leaves; a node without stats is skipped.
		{[]DashboardNode{node("b", 7, 0, 6, 7), node("c", 5004, 2, 0, 5004), {Name: "old"}}, 32, 5, []float64{20, 32}, 5011},
		// a comes back: its return is a first report again.
		{[]DashboardNode{node("a", 200, 9, 150, 200), node("b", 7, 0, 6, 7), node("c", 5004, 2, 0, 5004)}, 32, 5, []float64{20, 32}, 5211},
		// d reports before its first reserve (no latency buckets yet), then after.
		{[]DashboardNode{node("d", 0, 0)}, 32, 5, []float64{20, 32}, 0},
		{[]DashboardNode{node("d", 1, 0, 0, 1)}, 33, 5, []float64{20, 33}, 1},
	}
	for i, s := range steps {
		st, totals := fc.add(s.nodes)
		if st.Outcomes["created"] != s.created || st.Outcomes["sold_out"] != s.sold ||
			fmt.Sprint(st.Buckets) != fmt.Sprint(s.buckets) || fmt.Sprint(st.Bounds) != fmt.Sprint(bounds) || totals["created"] != s.totalCreated {
			t.Fatalf("step %d: %+v, totals %v; want created %v, sold out %v, buckets %v, total created %v",
				i, st, totals, s.created, s.sold, s.buckets, s.totalCreated)
		}
	}
	if !reportsStats([]DashboardNode{{Name: "x"}, node("y", 0, 0, 0, 0)}) || reportsStats([]DashboardNode{{Name: "x"}}) {
		t.Fatal("reportsStats")
	}
}

// TestServerStats: a node's report counts its reservations by outcome and its reserve
// latency, and nothing else of the registry.
func TestServerStats(t *testing.T) {
	s := NewServer()
	s.Inventory, s.Ledger, s.Sessions = struct{ revguard.Inventory }{}, struct{ revguard.Ledger }{}, struct{ revguard.Sessions }{}
	s.Handler()
	s.metrics.observeReservation(outcomeReserved)
	s.metrics.observeReservation(outcomeReserved)
	s.metrics.observeReservation("sold_out")
	s.metrics.observeRequest(reserveRoute, 201, 3*time.Millisecond)
	s.metrics.observeRequest("GET /v1/skus/{sku}", 200, time.Millisecond) // not a reserve
	st := s.Stats()
	if st.Outcomes[outcomeReserved] != 2 || st.Outcomes["sold_out"] != 1 {
		t.Fatalf("outcomes %v", st.Outcomes)
	}
	if len(st.Buckets) == 0 || st.Buckets[len(st.Buckets)-1] != 1 || len(st.Bounds) != len(st.Buckets) {
		t.Fatalf("latency buckets %v over %v; want one reserve", st.Buckets, st.Bounds)
	}
}
