package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// registerFleet registers the distributed mode's gauges, per node. They read the
// sampler's latest values (Redis round trip, the outbox group's backlog, whether each
// store answered) and the outbox's own counters, all in memory: a scrape never waits
// for Redis or PostgreSQL.
func (m *serverMetrics) registerFleet(f *Fleet) {
	up := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_redis_up",
			Help: "1 when Redis answered this node's last ping (every second), else 0.",
		}, func() float64 { return up(f.sample.redisUp.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_postgres_up",
			Help: "1 when PostgreSQL answered this node's last ping (every second), else 0.",
		}, func() float64 { return up(f.sample.postgresUp.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_redis_rtt_seconds",
			Help: "Round trip of this node's last PING to Redis (the slowest master of a Cluster).",
		}, func() float64 { return time.Duration(f.sample.rtt.Load()).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_outbox_in_flight",
			Help: "Outbox entries this node has read and not yet applied to the ledger and acknowledged.",
		}, func() float64 { return float64(f.Outbox.InFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_outbox_pending",
			Help: "Outbox entries delivered to some node of the fleet and not yet acknowledged (the streams' pending count).",
		}, func() float64 { return float64(f.sample.pending.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_outbox_undelivered",
			Help: "Outbox entries not yet delivered to any node.",
		}, func() float64 { return float64(f.sample.undelivered.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "revguard_outbox_applied_events_total",
			Help: "Events this node has applied to the ledger since it started.",
		}, func() float64 { return float64(f.Outbox.Applied()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_outbox_lag_seconds",
			Help: "How long the oldest event this node read but has not applied has waited; 0 when it waits for new ones.",
		}, func() float64 { return f.Outbox.Lag().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_ledger_lag_events",
			Help: "Events of the whole fleet not yet applied to the ledger (pending and undelivered outbox entries).",
		}, func() float64 { return float64(f.sample.pending.Load() + f.sample.undelivered.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_ledger_lag_seconds",
			Help: "Age of the oldest event of the fleet not yet applied to the ledger; 0 when caught up.",
		}, func() float64 {
			oldest := f.sample.oldest.Load()
			if oldest == 0 {
				return 0
			}
			return max(0, time.Since(time.Unix(0, oldest)).Seconds())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_sessions_cached",
			Help: "Customer sessions held in this node's cache.",
		}, func() float64 { return float64(f.Sessions.Len()) }),
	)
}
