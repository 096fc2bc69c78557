package httpapi

import (
	"context"
	"fmt"
	"testing"

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
