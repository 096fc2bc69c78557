package httpapi

import (
	"net/http"
	"strings"

	"github.com/revenueguard/revguard"
)

// routes registers the whole API on mux and returns its patterns (the route labels of
// the metrics).
func (s *Server) routes(mux *http.ServeMux) []string {
	var patterns []string
	handle := func(pattern string, h http.HandlerFunc) {
		if strings.HasPrefix(pattern, "GET ") {
			// docs/api.md: a body over 64 KiB is refused before any other check. The
			// routes that read a body refuse it in withBody; a GET reads none.
			get := h
			h = func(w http.ResponseWriter, r *http.Request) {
				if r.ContentLength > MaxBodyBytes {
					s.writeError(w, r, tooLarge())
					return
				}
				get(w, r)
			}
		}
		mux.Handle(pattern, h)
		patterns = append(patterns, pattern)
	}
	// A public GET (no token) checks its body's headers first; one that takes a
	// token checks them once the caller is allowed (getBodyAllowed), as a route that
	// reads its body does in withBody.
	bodyChecked := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s.getBodyAllowed(w, r) {
				h(w, r)
			}
		}
	}
	public := func(pattern string, h http.HandlerFunc) { handle(pattern, bodyChecked(h)) }
	// The probes, the metrics and the dashboard's page and files are left out of the
	// IP limit (docs/api.md), refused or not: their requests count as counted.
	unlimited := func(pattern string, h http.HandlerFunc) {
		checked := bodyChecked(h)
		handle(pattern, func(w http.ResponseWriter, r *http.Request) {
			markIPCounted(w)
			checked(w, r)
		})
	}
	// An event stream writes its answer over time: the HTTP server hands it the
	// connection (HTTPServer, isStream, which looks only at paths with these
	// endings).
	s.streamRoutes = map[string]bool{}
	stream := func(pattern string, h http.HandlerFunc) {
		if !strings.HasSuffix(pattern, "/events") && !strings.HasSuffix(pattern, "/stream") {
			panic("httpapi: an event stream's path must end in /events or /stream: " + pattern)
		}
		handle(pattern, h)
		s.streamRoutes[pattern] = true
	}

	// Admin (admin token).
	handle("PUT /v1/skus/{sku}", s.handlePutSKU)
	handle("GET /v1/skus/{sku}", s.handleGetSKU)
	handle("POST /v1/sessions", s.handleCreateSession)
	handle("GET /v1/orders", s.handleListOrders)
	handle("PUT /v1/skus/{sku}/waiting-room", s.handlePutRoom)
	handle("GET /v1/skus/{sku}/waiting-room", s.handleGetRoom)
	handle("DELETE /v1/skus/{sku}/waiting-room", s.handleDeleteRoom)
	stream("GET /v1/events", s.handleEvents)
	handle("GET /v1/webhooks", s.handleListWebhooks)
	handle("POST /v1/webhooks", s.handleCreateWebhook)
	handle("GET /v1/webhooks/{id}", s.handleGetWebhook)
	handle("DELETE /v1/webhooks/{id}", s.handleDeleteWebhook)
	handle("POST /v1/webhooks/{id}/pause", s.handlePauseWebhook)
	handle("POST /v1/webhooks/{id}/resume", s.handleResumeWebhook)
	stream("GET /v1/dashboard/stream", s.handleDashboardStream)

	// Customer (session token; GET and release of a reservation also the admin).
	handle("DELETE /v1/sessions/current", s.handleLogout)
	handle("POST /v1/skus/{sku}/reservations", s.handleReserve)
	handle("GET /v1/reservations/{id}", s.handleGetReservation)
	handle("POST /v1/reservations/{id}/confirm", s.handleConfirm)
	handle("POST /v1/reservations/{id}/release", s.handleRelease)
	handle("GET /v1/me/reservations", s.handleMyReservations)
	handle("POST /v1/skus/{sku}/waiting-room/place", s.handleJoin)
	handle("GET /v1/skus/{sku}/waiting-room/place", s.handleGetPlace)
	stream("GET /v1/skus/{sku}/waiting-room/place/events", s.handlePlaceEvents)

	// Public.
	public("GET /v1/skus/{sku}/availability", s.handleAvailability)
	unlimited("GET /healthz", s.handleHealthz)
	unlimited("GET /readyz", s.handleReadyz)
	unlimited("GET /metrics", s.handleMetrics)
	public("GET /v1/openapi.json", s.handleOpenAPI)
	unlimited("GET /dashboard/{$}", s.handleDashboardPage)
	unlimited("GET /dashboard/{file}", s.handleDashboardAsset)

	// The storefront example (demo only), when configured.
	if s.Example != nil {
		public("GET /example/{$}", s.handleExamplePage)
		public("GET /example/{file}", s.handleExampleAsset)
		handle("POST /example/session", s.handleExampleSession)
	}

	// Everything else: 404, or 405 with Allow when the path exists for other methods.
	mux.HandleFunc("/", s.handleNoRoute)
	return patterns
}

// probeMethods are the methods the API serves on some path, in the order Allow lists
// them. HEAD is allowed wherever GET is.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete}

// handleNoRoute answers a request that no API pattern matched. The standard mux would
// answer 404 or 405 in text/plain; this answers a problem document instead, with the
// Allow header of RFC 9110 computed the way the mux does it: by asking which methods
// match the path.
func (s *Server) handleNoRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range probeMethods {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", ")) // on a 429 in its place too
	}
	if s.limitUnserved(w, r) {
		return
	}
	if len(allow) == 0 {
		s.writeProblem(w, r, revguard.CodeNotFound, "no such endpoint")
		return
	}
	s.writeProblem(w, r, revguard.CodeMethodNotAllowed, r.Method+" is not allowed here; allowed: "+strings.Join(allow, ", "))
}
