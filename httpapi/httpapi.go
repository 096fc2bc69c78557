// Package httpapi is Revenue Guard's HTTP gateway: the v1 API of docs/api.md over the root
// interfaces (Inventory, Ledger, Sessions, BotChecker, RateLimiter).
//
// It authenticates callers (the admin token, or a customer session), decodes request
// bodies strictly, applies rate limits, refuses what is certainly sold out before the bot
// check, verifies the bot token, and hands the rest to the SKU's serialisation point.
// Every error is an RFC 9457 problem document whose code comes from revguard.Code
// through the one table in problem.go.
//
// cmd/revguard builds a Server with NewServer, sets its fields, and serves Handler().
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/revenueguard/revguard"
)

// DefaultBotCheckOff is the /readyz warning of a server without a bot checker.
const DefaultBotCheckOff = "BOT CHECK IS OFF: no Turnstile secret is configured, so reservations are not verified to come from humans"

// Server serves the v1 API. Set its fields after NewServer and before the first call of
// Handler; they must not change afterwards.
type Server struct {
	// Inventory, Ledger and Sessions are required.
	Inventory revguard.Inventory
	Ledger    revguard.Ledger
	Sessions  revguard.Sessions

	// BotChecker verifies the Turnstile token of each reservation; nil turns the bot
	// check off (and /readyz says so with BotCheckOff).
	BotChecker revguard.BotChecker

	// CustomerLimiter (keyed by customer id) and IPLimiter (keyed by client IP) bound
	// reserve, confirm and release requests; nil means no limit.
	CustomerLimiter revguard.RateLimiter
	IPLimiter       revguard.RateLimiter

	// AdminToken is the admin bearer token; empty disables the admin endpoints.
	AdminToken string

	// TrustedProxies lists the proxies whose X-Forwarded-For header names the client.
	// A request from any other address is attributed to its socket's address.
	TrustedProxies []netip.Prefix

	// Registerer receives the server's metrics; Gatherer is served on /metrics.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	// Ready reports whether recovery has finished and every backing store answers
	// (/readyz); nil means always ready.
	Ready func(ctx context.Context) error

	// BotCheckOff is the warning /readyz shows while BotChecker is nil.
	BotCheckOff string

	// Logger receives internal errors (with request ids) and, at debug level, an
	// access log line per request.
	Logger *slog.Logger

	// Now is the clock of sale opening times; it should be the inventory's clock.
	Now func() time.Time

	// WaitingRoom serves the SKUs' waiting rooms; a reservation of a SKU with a room
	// needs a current admission from it. Nil: no waiting rooms (their endpoints answer
	// 404 waiting_room_not_found).
	WaitingRoom revguard.WaitingRoom

	// PlaceStreamEvery is how often the place stream (server-sent events) reads the
	// place; DefaultPlaceStreamEvery when zero.
	PlaceStreamEvery time.Duration

	// Example, when set, serves the storefront example under /example/ (example.go):
	// a demonstration, off by default.
	Example *Example

	// Changes, when set, serves the change log as the event stream GET /v1/events;
	// nil answers 404 there.
	Changes revguard.ChangeReader

	// Webhooks, when set, serves the registration of webhook endpoints under
	// /v1/webhooks; nil answers 404 there. WebhooksChanged, when set, is called after
	// an endpoint is created, deleted, paused or resumed (the dispatcher's Kick).
	Webhooks        revguard.Webhooks
	WebhooksChanged func()

	// Dashboard feeds the live dashboard under /dashboard/; nil shows no SKUs.
	Dashboard *Dashboard

	once      sync.Once
	handler   http.Handler
	mux       *http.ServeMux
	adminHash [32]byte
	fleet     fleetFlights // Inventory, when a fleet shares its idempotency keys
	metrics   *metrics
	promHTTP  http.Handler
	idPrefix  string        // random per Server, so generated request ids are unique across restarts
	idSeq     atomic.Uint64 // the counter part of generated request ids
	flightMu  sync.Mutex
	flights   map[string]*flight // reserveOnce's runs in progress, by customer and idempotency key
	// streamRoutes are the patterns of the event streams (routes).
	streamRoutes map[string]bool
	// placeStreams counts each customer's open place streams (MaxPlaceStreams).
	placeStreamMu sync.Mutex
	placeStreams  map[string]int

	// streams is cancelled by CloseStreams: the place, event and dashboard streams
	// end, so that a graceful shutdown does not wait for them.
	streams      context.Context
	closeStreams context.CancelFunc
}

// CloseStreams ends every server-sent event stream, at once and for good: register it
// with http.Server.RegisterOnShutdown, so that Shutdown, which waits for the requests
// in flight, does not wait for streams that only end when their place does.
func (s *Server) CloseStreams() {
	s.once.Do(s.build)
	s.closeStreams()
}

// NewServer returns a Server with its defaults: no bot check, no rate limits, a fresh
// Prometheus registry, a discarding logger and the real clock.
func NewServer() *Server {
	reg := prometheus.NewRegistry()
	return &Server{
		Registerer:  reg,
		Gatherer:    reg,
		BotCheckOff: DefaultBotCheckOff,
		Logger:      slog.New(slog.DiscardHandler),
		Now:         time.Now,
	}
}

// Handler returns the http.Handler of the whole API. The first call builds it and
// registers the metrics; it panics if Inventory, Ledger or Sessions is nil, a
// programming error of the caller.
func (s *Server) Handler() http.Handler {
	s.once.Do(s.build)
	return s.handler
}

func (s *Server) build() {
	if s.Inventory == nil || s.Ledger == nil || s.Sessions == nil {
		panic("httpapi: Server needs Inventory, Ledger and Sessions")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Registerer == nil {
		reg := prometheus.NewRegistry()
		s.Registerer, s.Gatherer = reg, reg
	}
	if s.Gatherer == nil {
		s.Gatherer = prometheus.NewRegistry()
	}
	if s.AdminToken != "" {
		s.adminHash = revguard.HashSessionToken(s.AdminToken) // as authenticate hashes a bearer token
	}
	var seed [5]byte
	rand.Read(seed[:])
	s.idPrefix = base32.StdEncoding.EncodeToString(seed[:]) + "-"
	s.flights = make(map[string]*flight)
	s.fleet, _ = s.Inventory.(fleetFlights)

	s.streams, s.closeStreams = context.WithCancel(context.Background())
	s.promHTTP = promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{})
	s.mux = http.NewServeMux()
	patterns := s.routes(s.mux)
	s.metrics = newMetrics(s.Registerer, s.Logger, patterns)
	s.handler = http.HandlerFunc(s.serveHTTP)
}
