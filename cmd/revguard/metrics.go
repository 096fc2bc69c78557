package main

import (
	"context"
	"time"

	"github.com/revenueguard/revguard"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// serverMetrics are the collectors that only cmd can fill, because they read several
// stores: group commit, ledger lag, cached sessions, SKUs and holds. The HTTP metrics
// (requests, latency, reservations and bot checks by outcome) belong to httpapi.
type serverMetrics struct {
	reg         *prometheus.Registry
	batchEvents prometheus.Histogram
	batchBytes  prometheus.Histogram
	fsync       prometheus.Histogram
}

// newServerMetrics registers the Go runtime and process collectors on reg; the
// journal's histograms are registered with the embedded stores (registerStores).
func newServerMetrics(reg *prometheus.Registry) *serverMetrics {
	m := &serverMetrics{
		reg: reg,
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "revguard_journal_batch_events",
			Help:    "Events made durable by one group commit (one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 to 65536
		}),
		batchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "revguard_journal_batch_bytes",
			Help:    "Bytes written by one group commit.",
			Buckets: prometheus.ExponentialBuckets(64, 4, 9), // 64 B to 4 MiB
		}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "revguard_journal_fsync_seconds",
			Help:    "Latency of the journal's fsync, one per group commit.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14), // 25 µs to 0.2 s
		}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// observeFlush is the journal's OnFlush hook, called by its flusher after each group
// commit.
func (m *serverMetrics) observeFlush(events, bytes int, fsync time.Duration) {
	m.batchEvents.Observe(float64(events))
	m.batchBytes.Observe(float64(bytes))
	m.fsync.Observe(fsync.Seconds())
}

// registerStores registers the embedded mode's metrics: the journal's histograms, and
// the gauges that read the opened stores of s at scrape time.
func (m *serverMetrics) registerStores(s *Main) {
	m.reg.MustRegister(
		m.batchEvents, m.batchBytes, m.fsync,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_ledger_lag_events",
			Help: "Durable journal events not yet applied to the ledger.",
		}, func() float64 { return float64(ledgerLagEvents(s.Journal.Durable(), s.Writer.Applied())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_ledger_lag_seconds",
			Help: "How long the oldest event read but not yet applied to the ledger has waited; 0 when caught up.",
		}, func() float64 { return s.Writer.Lag().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_changes_lag_events",
			Help: "Durable journal events not yet in the change log (the event stream's and the webhooks'). " +
				"The journal keeps every event until both the ledger and the change log have it: alert when this grows.",
		}, func() float64 { return float64(ledgerLagEvents(s.Journal.Durable(), s.ChangeWriter.JournalSeq())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_sessions_cached",
			Help: "Customer sessions held in the in-memory cache.",
		}, func() float64 { return float64(s.Sessions.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_skus",
			Help: "SKUs in the inventory.",
		}, func() float64 { return float64(s.Inventory.Stats().SKUs) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revguard_holds",
			Help: "Reservations currently held (not yet confirmed, released or expired).",
		}, func() float64 { return float64(s.Inventory.Stats().Holds) }),
	)
}

// ledgerLagEvents is how many durable events the ledger has not applied.
func ledgerLagEvents(durable, applied uint64) uint64 {
	if applied >= durable {
		return 0
	}
	return durable - applied
}

// roomLister lists the waiting rooms (inproc.WaitingRoom, redis.WaitingRoom).
type roomLister interface {
	ListRooms(ctx context.Context) ([]revguard.Room, error)
}

var (
	roomCustomersDesc = prometheus.NewDesc("revguard_waiting_room_customers",
		"Customers of a SKU's waiting room by state: pre_queue (joined before the draw), waiting (in line), "+
			"admitted (current admissions), used (admissions that bought a reservation).",
		[]string{"sku", "state"}, nil)
	roomSoldOutDesc = prometheus.NewDesc("revguard_waiting_room_sold_out",
		"1 while a SKU's waiting room is closed because the SKU is sold out.", []string{"sku"}, nil)
)

// roomCollector reports every waiting room at scrape time: a read of the rooms in
// memory, or in distributed mode of the sampler's last reading (sampledRooms).
type roomCollector struct{ rooms roomLister }

func (c roomCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- roomCustomersDesc
	ch <- roomSoldOutDesc
}

func (c roomCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rooms, err := c.rooms.ListRooms(ctx)
	if err != nil {
		return // Redis down: revguard_redis_up says so
	}
	for _, r := range rooms {
		for _, v := range []struct {
			state string
			n     int64
		}{{"pre_queue", r.PreQueue}, {"waiting", r.Waiting}, {"admitted", r.Admitted}, {"used", r.Used}} {
			ch <- prometheus.MustNewConstMetric(roomCustomersDesc, prometheus.GaugeValue, float64(v.n), r.SKU, v.state)
		}
		soldOut := 0.0
		if r.SoldOut {
			soldOut = 1
		}
		ch <- prometheus.MustNewConstMetric(roomSoldOutDesc, prometheus.GaugeValue, soldOut, r.SKU)
	}
}
