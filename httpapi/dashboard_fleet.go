package httpapi

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// NodeStats is what a node has counted since it started: its reservation decisions by
// outcome and the cumulative counts of its reserve latency histogram. In distributed
// mode each node reports its own with its health, so that the dashboard of any node
// charts the whole fleet.
type NodeStats struct {
	Outcomes map[string]float64 `json:"outcomes"`
	Bounds   []float64          `json:"bounds"`  // the latency buckets' upper bounds, in seconds
	Buckets  []float64          `json:"buckets"` // cumulative counts, one per bound
}

// Stats returns this server's NodeStats, read from its own two collectors only. Call
// it after Handler.
func (s *Server) Stats() NodeStats {
	if s.metrics == nil {
		return NodeStats{Outcomes: map[string]float64{}}
	}
	return gatherStats(s.metrics.stats)
}

// gatherStats reads a node's NodeStats from g, which holds its reservation counter and
// request latency histogram.
func gatherStats(g prometheus.Gatherer) NodeStats {
	st := NodeStats{Outcomes: make(map[string]float64)}
	fams, err := g.Gather()
	if err != nil && len(fams) == 0 {
		return st
	}
	for _, f := range fams {
		switch f.GetName() {
		case "revguard_reservations_total":
			for _, m := range f.GetMetric() {
				st.Outcomes[label(m, "outcome")] += m.GetCounter().GetValue()
			}
		case "revguard_http_request_duration_seconds":
			for _, m := range f.GetMetric() {
				if label(m, "route") != reserveRoute {
					continue
				}
				h := m.GetHistogram()
				if st.Buckets == nil {
					st.Buckets = make([]float64, len(h.GetBucket()))
					st.Bounds = make([]float64, len(h.GetBucket()))
				}
				for i, b := range h.GetBucket() {
					if i < len(st.Buckets) {
						st.Buckets[i] += float64(b.GetCumulativeCount())
						st.Bounds[i] = b.GetUpperBound()
					}
				}
			}
		}
	}
	return st
}

// fleetCounters turns the counters that the live nodes report, each since its own
// start, into fleet counters that only grow, as the sampler's rates need: a node seen
// for the first time adds nothing (its past is not a burst of now), one that left
// takes nothing away, and one whose counters went down (it restarted under the same
// name) adds what it counted since.
type fleetCounters struct {
	prev     map[string]NodeStats // by node name, as last seen
	outcomes map[string]float64
	bounds   []float64
	buckets  []float64
}

// add takes the nodes' latest reports and returns the fleet counters, and the totals
// of the live nodes since each started.
func (fc *fleetCounters) add(nodes []DashboardNode) (st NodeStats, totals map[string]float64) {
	if fc.prev == nil {
		fc.prev, fc.outcomes = make(map[string]NodeStats), make(map[string]float64)
	}
	totals = make(map[string]float64)
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		cur := n.Stats
		if cur == nil {
			continue
		}
		for k, v := range cur.Outcomes {
			totals[k] += v
		}
		if fc.bounds == nil && len(cur.Bounds) > 0 {
			fc.bounds, fc.buckets = slices.Clone(cur.Bounds), make([]float64, len(cur.Bounds))
		}
		seen[n.Name] = true
		p, ok := fc.prev[n.Name]
		fc.prev[n.Name] = *cur
		if !ok {
			continue
		}
		for k, v := range cur.Outcomes {
			fc.outcomes[k] += grown(p.Outcomes[k], v)
		}
		if slices.Equal(cur.Bounds, fc.bounds) {
			prev := p.Buckets
			if len(prev) != len(cur.Buckets) {
				prev = nil // none yet (no reserve before): from zero
			}
			reset := false
			for i := range prev {
				reset = reset || cur.Buckets[i] < prev[i]
			}
			for i, v := range cur.Buckets {
				if prev == nil || reset {
					fc.buckets[i] += v
				} else {
					fc.buckets[i] += v - prev[i]
				}
			}
		}
	}
	maps.DeleteFunc(fc.prev, func(name string, _ NodeStats) bool { return !seen[name] })
	return NodeStats{Outcomes: maps.Clone(fc.outcomes), Bounds: slices.Clone(fc.bounds), Buckets: slices.Clone(fc.buckets)}, totals
}

// reportsStats reports whether any of nodes carries its stats.
func reportsStats(nodes []DashboardNode) bool {
	return slices.ContainsFunc(nodes, func(n DashboardNode) bool { return n.Stats != nil })
}

// grown returns how much a counter that read prev and now reads cur has counted in
// between: the difference, or all of cur when it went down (a restart from zero).
func grown(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}
