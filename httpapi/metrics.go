package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revenueguard/revguard"
)

// unmatchedRoute labels the requests that matched no API pattern, so that random paths
// cannot create label values.
const unmatchedRoute = "unmatched"

// metrics are the gateway's Prometheus collectors. The label children of the hot
// paths are looked up once and cached, so observing a request costs no label hashing.
type metrics struct {
	requests     *prometheus.CounterVec   // route, status
	latency      *prometheus.HistogramVec // route, status
	reservations *prometheus.CounterVec   // outcome
	botChecks    *prometheus.CounterVec   // outcome
	botLatency   prometheus.Observer

	// stats gathers only the reservations and the latency, for the node's report to
	// the fleet (Server.Stats): cheap, where gathering the whole registry would run
	// every collector, some of which ask Redis.
	stats *prometheus.Registry

	routes   map[string]*routeMetrics // by pattern; read-only after newMetrics
	outcomes map[string]prometheus.Counter
	botOut   map[string]prometheus.Counter
}

// routeMetrics caches the children of one route by status. The map is copied on write
// (a route sees few statuses), so a read is one atomic load and a map lookup.
type routeMetrics struct {
	route    string
	mu       sync.Mutex // serialises writers of byStatus
	byStatus atomic.Pointer[map[int]statusMetrics]
}

type statusMetrics struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// reservation outcomes besides the error codes.
const (
	outcomeReserved = "reserved"
	outcomeReplayed = "replayed"
	outcomeOK       = "ok"
)

func newMetrics(reg prometheus.Registerer, log *slog.Logger, patterns []string) *metrics {
	m := &metrics{
		requests: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revguard_http_requests_total",
			Help: "HTTP requests by route pattern and status.",
		}, []string{"route", "status"})),
		latency: register(reg, log, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "revguard_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and status.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "status"})),
		reservations: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revguard_reservations_total",
			Help: "Reservation requests by outcome: reserved, replayed, or the error code.",
		}, []string{"outcome"})),
		botChecks: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revguard_bot_checks_total",
			Help: "Bot checks by outcome: ok, or the error code.",
		}, []string{"outcome"})),
		routes:   make(map[string]*routeMetrics, len(patterns)+1),
		outcomes: make(map[string]prometheus.Counter),
		botOut:   make(map[string]prometheus.Counter),
	}
	m.stats = prometheus.NewRegistry()
	m.stats.MustRegister(m.latency, m.reservations)
	m.botLatency = register(reg, log, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "revguard_bot_check_duration_seconds",
		Help:    "Latency of bot checks against the verifier.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}))
	for _, p := range append(patterns, unmatchedRoute) {
		rm := &routeMetrics{route: p}
		rm.byStatus.Store(&map[int]statusMetrics{})
		m.routes[p] = rm
	}
	for _, c := range revguard.Codes {
		m.outcomes[string(c)] = m.reservations.WithLabelValues(string(c))
		m.botOut[string(c)] = m.botChecks.WithLabelValues(string(c))
	}
	m.outcomes[outcomeReserved] = m.reservations.WithLabelValues(outcomeReserved)
	m.outcomes[outcomeReplayed] = m.reservations.WithLabelValues(outcomeReplayed)
	m.botOut[outcomeOK] = m.botChecks.WithLabelValues(outcomeOK)
	return m
}

// register registers c, or returns the collector already registered under its
// description (two servers on one registry share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, log *slog.Logger, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Error("httpapi: metrics not registered", "error", err)
	return c
}

// observeRequest records one request of the route pattern.
func (m *metrics) observeRequest(pattern string, status int, d time.Duration) {
	rm, ok := m.routes[pattern]
	if !ok {
		rm = m.routes[unmatchedRoute]
	}
	sm, ok := (*rm.byStatus.Load())[status]
	if !ok {
		sm = rm.add(m, status)
	}
	sm.count.Inc()
	sm.latency.Observe(d.Seconds())
}

func (rm *routeMetrics) add(m *metrics, status int) statusMetrics {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	old := *rm.byStatus.Load()
	if sm, ok := old[status]; ok {
		return sm
	}
	code := strconv.Itoa(status)
	sm := statusMetrics{
		count:   m.requests.WithLabelValues(rm.route, code),
		latency: m.latency.WithLabelValues(rm.route, code),
	}
	next := make(map[int]statusMetrics, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[status] = sm
	rm.byStatus.Store(&next)
	return sm
}

// observeReservation counts one reservation request by outcome.
func (m *metrics) observeReservation(outcome string) {
	if c, ok := m.outcomes[outcome]; ok {
		c.Inc()
	}
}

// observeBotCheck counts one bot check by outcome and records its latency.
func (m *metrics) observeBotCheck(err error, d time.Duration) {
	outcome := outcomeOK
	if err != nil {
		outcome = string(revguard.ErrorCode(err))
	}
	m.countBotCheck(outcome)
	m.botLatency.Observe(d.Seconds())
}

// countBotCheck counts one bot check outcome without a verifier call (a missing token).
func (m *metrics) countBotCheck(outcome string) {
	if c, ok := m.botOut[outcome]; ok {
		c.Inc()
	}
}

// handleMetrics serves the Gatherer in the Prometheus text format.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.promHTTP.ServeHTTP(w, r)
}
