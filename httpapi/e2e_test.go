package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
)

// The end-to-end tests drive the API over real connections to a Server on the real
// embedded backends (see env). This file: health, routing, authentication, SKUs and
// sessions.

func TestHealth(t *testing.T) { eachBackend(t, testHealth) }

func testHealth(t *testing.T, b backend) {
	t.Run("OK", func(t *testing.T) {
		e := mustOpenEnv(t, envOptions{backend: b, botCheck: true})
		r := e.do(req{Method: "GET", Path: "/healthz"})
		var h struct{ Status string }
		r.json(t, 200, &h)
		r = e.do(req{Method: "GET", Path: "/readyz"})
		var ready struct {
			Status   string `json:"status"`
			BotCheck string `json:"bot_check"`
		}
		r.json(t, 200, &ready)
		if h.Status != "ok" || ready.Status != "ready" || ready.BotCheck != "on" {
			t.Fatalf("healthz %+v readyz %+v", h, ready)
		}
		golden(t, "readyz_ok", r.Body)
	})
	t.Run("BotCheckOff", func(t *testing.T) {
		e := mustOpenEnv(t, envOptions{backend: b})
		r := e.do(req{Method: "GET", Path: "/readyz"})
		var ready struct {
			Status   string `json:"status"`
			BotCheck string `json:"bot_check"`
			Warning  string `json:"warning"`
		}
		r.json(t, 200, &ready)
		if ready.BotCheck != "off" || !strings.Contains(ready.Warning, "BOT CHECK IS OFF") {
			t.Fatalf("readyz without a bot checker: %s", r.Body)
		}
	})
	t.Run("ErrNotReady", func(t *testing.T) {
		e := mustOpenEnv(t, envOptions{backend: b, edit: func(s *httpapi.Server) {
			s.Ready = func(ctx context.Context) error { return errors.New("recovery running: secret detail") }
		}})
		r := e.do(req{Method: "GET", Path: "/readyz"})
		r.wantProblem(t, 503, revguard.CodeUnavailable)
		if strings.Contains(string(r.Body), "secret detail") || !strings.Contains(string(r.Body), `"bot_check":"off"`) {
			t.Fatalf("readyz 503 body: %s", r.Body)
		}
		golden(t, "readyz_unavailable", r.Body)
		e.do(req{Method: "GET", Path: "/healthz"}).json(t, 200, &struct{ Status string }{})
	})
	t.Run("Metrics", func(t *testing.T) {
		e := mustOpenEnv(t, envOptions{backend: b})
		e.do(req{Method: "GET", Path: "/v1/skus/nope/availability"})
		e.do(req{Method: "GET", Path: "/no/such/path"})
		r := e.do(req{Method: "GET", Path: "/metrics"})
		body := string(r.Body)
		for _, want := range []string{
			`revguard_http_requests_total{route="GET /v1/skus/{sku}/availability",status="404"} 1`,
			`revguard_http_requests_total{route="unmatched",status="404"} 1`,
			`revguard_http_request_duration_seconds_bucket{route="GET /v1/skus/{sku}/availability",status="404"`,
			"revguard_reservations_total", "revguard_bot_checks_total", "revguard_bot_check_duration_seconds",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("/metrics: %d %s", r.Status, r.Header.Get("Content-Type"))
		}
	})
}

func TestRouting(t *testing.T) { eachBackend(t, testRouting) }

func testRouting(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b})
	t.Run("ErrNotFound", func(t *testing.T) {
		e := e.with(t)
		for _, path := range []string{"/", "/v1", "/v1/nope", "/v1/skus/", "/v1/skus/a/b/c", "/v2/skus/a",
			"/v1//skus/a", "/v1/skus/./a/availability", "/v1/skus/./nope", "/v1/skus/a/./availability", "/healthz/.."} {
			e.do(req{Method: "GET", Path: path, Token: e.admin}).wantProblem(t, 404, revguard.CodeNotFound)
		}
		golden(t, "problem_not_found", e.do(req{Method: "GET", Path: "/v1/nope"}).Body)
	})
	t.Run("ErrDotSKU", func(t *testing.T) {
		// An empty, "." or ".." SKU id is an invalid SKU id on a SKU's routes, after
		// the route's own checks before it (the token).
		e := e.with(t)
		alice := e.session("alice")
		for _, tc := range []struct{ method, path, token string }{
			{"GET", "/v1/skus/.", e.admin},
			{"PUT", "/v1/skus/..", e.admin},
			{"GET", "/v1/skus/%2E", e.admin},
			{"GET", "/v1/skus/%2e%2E", e.admin},
			{"GET", "/v1/skus/./availability", ""},
			{"GET", "/v1/skus//availability", ""},
			{"POST", "/v1/skus/./reservations", alice},
			{"PUT", "/v1/skus/../waiting-room", e.admin},
			{"GET", "/v1/skus/./waiting-room/place", alice},
		} {
			e.do(req{Method: tc.method, Path: tc.path, Token: tc.token}).wantProblem(t, 400, revguard.CodeInvalidSKU)
		}
		e.do(req{Method: "GET", Path: "/v1/skus/."}).wantProblem(t, 401, revguard.CodeUnauthenticated)
		e.do(req{Method: "GET", Path: "/v1/skus/.", Token: alice}).wantProblem(t, 403, revguard.CodeForbidden)
		r := e.do(req{Method: "DELETE", Path: "/v1/skus/.", Token: e.admin})
		r.wantProblem(t, 405, revguard.CodeMethodNotAllowed)
		if got := r.Header.Get("Allow"); got != "GET, HEAD, PUT" {
			t.Errorf("DELETE /v1/skus/.: Allow %q", got)
		}
	})
	t.Run("ErrMethodNotAllowed", func(t *testing.T) {
		e := e.with(t)
		tests := []struct{ method, path, allow string }{
			{"DELETE", "/v1/skus/a", "GET, HEAD, PUT"},
			{"POST", "/v1/skus/a", "GET, HEAD, PUT"},
			{"GET", "/v1/skus/a/reservations", "POST"},
			{"PUT", "/v1/skus/a/availability", "GET, HEAD"},
			{"GET", "/v1/sessions", "POST"},
			{"GET", "/v1/sessions/current", "DELETE"},
			{"POST", "/v1/orders", "GET, HEAD"},
			{"DELETE", "/v1/reservations/x", "GET, HEAD"},
			{"GET", "/v1/reservations/x/confirm", "POST"},
			{"PATCH", "/v1/reservations/x/release", "POST"},
			{"POST", "/healthz", "GET, HEAD"},
			{"OPTIONS", "/metrics", "GET, HEAD"},
		}
		for _, tt := range tests {
			r := e.do(req{Method: tt.method, Path: tt.path, Token: e.admin})
			p := r.wantProblem(t, 405, revguard.CodeMethodNotAllowed)
			if got := r.Header.Get("Allow"); got != tt.allow {
				t.Errorf("%s %s: Allow %q, want %q (%s)", tt.method, tt.path, got, tt.allow, p.Detail)
			}
		}
		golden(t, "problem_method_not_allowed", e.do(req{Method: "DELETE", Path: "/v1/skus/a"}).Body)
	})
	t.Run("Head", func(t *testing.T) {
		e := e.with(t)
		e.putSKU("head", `{"stock":1}`)
		r := e.do(req{Method: "HEAD", Path: "/v1/skus/head/availability"})
		if r.Status != 200 || len(r.Body) != 0 {
			t.Fatalf("HEAD availability: %d %q", r.Status, r.Body)
		}
	})
}

func TestRequestID(t *testing.T) { eachBackend(t, testRequestID) }

func testRequestID(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b})
	// Sane forms: the usual ids (UUID, ULID, base64 as proxies and platforms make them).
	for _, id := range []string{"client-id_1.2:3", "550e8400-e29b-41d4-a716-446655440000",
		"01ARZ3NDEKTSV4RRFFQ69G5FAV", "dGhpcyBpcyBhIHJlcXVlc3QgaWQ=", "a+b/c=d@e", strings.Repeat("a", 128)} {
		r := e.do(req{Method: "GET", Path: "/healthz", Header: map[string]string{"X-Request-Id": id}})
		if got := r.Header.Get("X-Request-Id"); got != id {
			t.Fatalf("sane request id %q not echoed: %q", id, got)
		}
	}
	seen := map[string]bool{}
	for _, bad := range []string{"has space", "semi;colon", strings.Repeat("a", 129), "ü", `quo"te`, "<script>", "a,b"} {
		r := e.do(req{Method: "GET", Path: "/healthz", Header: map[string]string{"X-Request-Id": bad}})
		got := r.Header.Get("X-Request-Id")
		if got == bad || got == "" || seen[got] {
			t.Fatalf("request id %q answered with %q", bad, got)
		}
		seen[got] = true
	}
	// Every answer has one, errors included.
	r := e.do(req{Method: "GET", Path: "/nope"})
	if r.Header.Get("X-Request-Id") == "" {
		t.Fatal("404 without X-Request-Id")
	}
}

func TestAuthentication(t *testing.T) { eachBackend(t, testAuthentication) }

func testAuthentication(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b})
	e.putSKU("auth", `{"stock":5}`)
	cust := e.session("c-auth")

	t.Run("ErrMissing", func(t *testing.T) {
		e := e.with(t)
		r := e.do(req{Method: "GET", Path: "/v1/skus/auth"})
		r.wantProblem(t, 401, revguard.CodeUnauthenticated)
		if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
			t.Fatalf("WWW-Authenticate %q, want Bearer", got)
		}
		golden(t, "problem_unauthenticated", r.Body)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := e.with(t)
		// RFC 6750 3.1: a refused bearer token is invalid_token; another scheme (or
		// none) lacks any bearer credential, so the challenge names no error.
		tests := []struct{ auth, challenge string }{
			{"Bearer nope", `Bearer error="invalid_token"`},
			{"Bearer", `Bearer error="invalid_token"`},
			{"Bearer  ", `Bearer error="invalid_token"`},
			{"Bearer " + e.admin + "x", `Bearer error="invalid_token"`},
			{"Bearer a b", `Bearer error="invalid_token"`},
			{"Basic YWRtaW46eA==", "Bearer"},
			{e.admin, "Bearer"},
			{"Bearerx " + e.admin, "Bearer"},
		}
		for _, tt := range tests {
			r := e.do(req{Method: "GET", Path: "/v1/skus/auth", Header: map[string]string{"Authorization": tt.auth}})
			r.wantProblem(t, 401, revguard.CodeUnauthenticated)
			if got := r.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("Authorization %q: WWW-Authenticate %q, want %q", tt.auth, got, tt.challenge)
			}
		}
	})
	t.Run("SchemeCaseInsensitive", func(t *testing.T) {
		e := e.with(t)
		r := e.do(req{Method: "GET", Path: "/v1/skus/auth", Header: map[string]string{"Authorization": "bearer " + e.admin}})
		r.json(t, 200, &sku{})
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		e := e.with(t)
		for _, rq := range []req{
			{Method: "PUT", Path: "/v1/skus/auth", Body: `{"stock":5}`},
			{Method: "GET", Path: "/v1/skus/auth"},
			{Method: "POST", Path: "/v1/sessions", Body: `{"customer_id":"x"}`},
			{Method: "GET", Path: "/v1/orders"},
		} {
			rq.Token = cust
			r := e.do(rq)
			r.wantProblem(t, 403, revguard.CodeForbidden)
			if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="insufficient_scope"` {
				t.Errorf("%s %s: WWW-Authenticate %q, want the insufficient_scope challenge of RFC 6750", rq.Method, rq.Path, got)
			}
		}
		for _, rq := range []req{
			{Method: "POST", Path: "/v1/skus/auth/reservations"},
			{Method: "POST", Path: "/v1/reservations/x/confirm"},
			{Method: "DELETE", Path: "/v1/sessions/current"},
			{Method: "GET", Path: "/v1/me/reservations"},
		} {
			rq.Token = e.admin
			r := e.do(rq)
			r.wantProblem(t, 403, revguard.CodeForbidden)
			if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="insufficient_scope"` {
				t.Errorf("%s %s: WWW-Authenticate %q, want the insufficient_scope challenge of RFC 6750", rq.Method, rq.Path, got)
			}
		}
		golden(t, "problem_forbidden", e.do(req{Method: "GET", Path: "/v1/orders", Token: cust}).Body)
	})
	t.Run("Logout", func(t *testing.T) {
		e := e.with(t)
		tok := e.session("c-logout")
		e.do(req{Method: "GET", Path: "/v1/me/reservations", Token: tok}).json(t, 200, &orderPage{})
		// A malformed request logs nobody out.
		for _, bad := range []struct {
			rq     req
			status int
			code   revguard.Code
		}{
			{req{Body: "hello", Header: map[string]string{"Content-Type": "text/plain"}}, 415, revguard.CodeUnsupportedMediaType},
			{req{Body: `{"x":1}`}, 400, revguard.CodeInvalidRequest},
			{req{Body: `{"x":`}, 400, revguard.CodeInvalidRequest},
			{req{Body: `{}{}`}, 400, revguard.CodeInvalidRequest},
		} {
			bad.rq.Method, bad.rq.Path, bad.rq.Token = "DELETE", "/v1/sessions/current", tok
			e.do(bad.rq).wantProblem(t, bad.status, bad.code)
			e.do(req{Method: "GET", Path: "/v1/me/reservations", Token: tok}).json(t, 200, &orderPage{})
		}
		if r := e.do(req{Method: "DELETE", Path: "/v1/sessions/current", Token: tok, Body: `{}`}); r.Status != 204 {
			t.Fatalf("logout with an empty object: %d %s", r.Status, r.Body)
		}
		tok = e.session("c-logout")
		r := e.do(req{Method: "DELETE", Path: "/v1/sessions/current", Token: tok})
		if r.Status != 204 || len(r.Body) != 0 {
			t.Fatalf("logout: %d %s", r.Status, r.Body)
		}
		e.do(req{Method: "GET", Path: "/v1/me/reservations", Token: tok}).wantProblem(t, 401, revguard.CodeUnauthenticated)
		e.do(req{Method: "DELETE", Path: "/v1/sessions/current", Token: tok}).wantProblem(t, 401, revguard.CodeUnauthenticated)
	})
}

func TestSessionExpiry(t *testing.T) { eachBackend(t, testSessionExpiry) }

func testSessionExpiry(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b, clock: true})
	var out struct {
		Token      string `json:"token"`
		CustomerID string `json:"customer_id"`
		ExpiresAt  string `json:"expires_at"`
	}
	r := e.do(req{Method: "POST", Path: "/v1/sessions", Token: e.admin, Body: `{"customer_id":"c-exp","ttl_seconds":60}`})
	r.json(t, 201, &out)
	if out.ExpiresAt != "2026-11-27T09:01:00Z" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("session %+v, Cache-Control %q", out, r.Header.Get("Cache-Control"))
	}
	golden(t, "session_created", r.Body)
	e.do(req{Method: "GET", Path: "/v1/me/reservations", Token: out.Token}).json(t, 200, &orderPage{})
	e.clock.Advance(61e9)
	e.do(req{Method: "GET", Path: "/v1/me/reservations", Token: out.Token}).wantProblem(t, 401, revguard.CodeUnauthenticated)
}

func TestSessionsErrors(t *testing.T) { eachBackend(t, testSessionsErrors) }

func testSessionsErrors(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b})
	for _, body := range []string{``, `{}`, `{"customer_id":""}`, `{"customer_id":"c","ttl_seconds":59}`,
		`{"customer_id":"c","ttl_seconds":604801}`, `{"customer_id":"c","extra":1}`, `{"customer_id":"a","customer_id":"b"}`} {
		e.do(req{Method: "POST", Path: "/v1/sessions", Token: e.admin, Body: body}).wantProblem(t, 400, revguard.CodeInvalidRequest)
	}
}

func TestSKUs(t *testing.T) { eachBackend(t, testSKUs) }

func testSKUs(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b})
	t.Run("Create", func(t *testing.T) {
		e := e.with(t)
		r := e.do(req{Method: "PUT", Path: "/v1/skus/drop-1", Token: e.admin,
			Body: `{"stock":100,"per_customer_limit":2,"hold_seconds":300,"opens_at":"2026-01-01T10:00:00+01:00"}`})
		var s sku
		r.json(t, 201, &s)
		if r.Header.Get("Location") != "/v1/skus/drop-1" || s.Available != 100 || s.OpensAt == nil || *s.OpensAt != "2026-01-01T09:00:00Z" {
			t.Fatalf("created %+v, Location %q", s, r.Header.Get("Location"))
		}
		golden(t, "sku_created", r.Body)
	})
	t.Run("Update", func(t *testing.T) {
		e := e.with(t)
		r := e.do(req{Method: "PUT", Path: "/v1/skus/drop-1", Token: e.admin, Body: `{"stock":120}`})
		var s sku
		r.json(t, 200, &s)
		want := sku{SKU: "drop-1", Stock: 120, Available: 120, PerCustomerLimit: 1, HoldSeconds: 600}
		if s != want {
			t.Fatalf("updated %+v, want %+v (PUT replaces the whole configuration)", s, want)
		}
		golden(t, "sku_updated", r.Body)
	})
	t.Run("Get", func(t *testing.T) {
		e := e.with(t)
		r := e.do(req{Method: "GET", Path: "/v1/skus/drop-1", Token: e.admin})
		r.json(t, 200, &sku{})
		golden(t, "sku", r.Body)
	})
	t.Run("Availability", func(t *testing.T) {
		e := e.with(t)
		r := e.do(req{Method: "GET", Path: "/v1/skus/drop-1/availability"})
		var a struct {
			SKU       string  `json:"sku"`
			Available int64   `json:"available"`
			SoldOut   bool    `json:"sold_out"`
			OpensAt   *string `json:"opens_at"`
		}
		r.json(t, 200, &a)
		if a.SKU != "drop-1" || a.Available != 120 || a.SoldOut || r.Header.Get("Cache-Control") != "max-age=1" {
			t.Fatalf("availability %+v, Cache-Control %q", a, r.Header.Get("Cache-Control"))
		}
		golden(t, "availability", r.Body)
	})
	t.Run("ErrSKUNotFound", func(t *testing.T) {
		e := e.with(t)
		e.do(req{Method: "GET", Path: "/v1/skus/nope", Token: e.admin}).wantProblem(t, 404, revguard.CodeSKUNotFound)
		r := e.do(req{Method: "GET", Path: "/v1/skus/nope/availability"})
		r.wantProblem(t, 404, revguard.CodeSKUNotFound)
		golden(t, "problem_sku_not_found", r.Body)
	})
	t.Run("ErrInvalidSKU", func(t *testing.T) {
		e := e.with(t)
		for _, id := range []string{"bad!id", strings.Repeat("x", 129), "sp%20ace", "sl%2Fash", "%C3%BC"} {
			e.do(req{Method: "PUT", Path: "/v1/skus/" + id, Token: e.admin, Body: `{"stock":1}`}).wantProblem(t, 400, revguard.CodeInvalidSKU)
			e.do(req{Method: "GET", Path: "/v1/skus/" + id + "/availability"}).wantProblem(t, 400, revguard.CodeInvalidSKU)
		}
		e.putSKU(strings.Repeat("x", 128), `{"stock":1}`)
		e.putSKU("A-z_0.9:x", `{"stock":1}`)
		golden(t, "problem_invalid_sku", e.do(req{Method: "GET", Path: "/v1/skus/bad!id", Token: e.admin}).Body)
	})
	t.Run("ErrInvalidRequest", func(t *testing.T) {
		e := e.with(t)
		for name, body := range map[string]string{
			"unknown_field": `{"stock":1,"price":5}`,
			"duplicate_key": `{"stock":1,"stock":2}`,
			"trailing_data": `{"stock":1}{"stock":2}`,
			"wrong_type":    `{"stock":"1"}`,
			"missing_stock": `{"hold_seconds":5}`,
			"bad_opens_at":  `{"stock":1,"opens_at":"27/11/2026"}`,
			"zero_limit":    `{"stock":1,"per_customer_limit":0}`,
			"stock_range":   `{"stock":1000000001}`,
		} {
			r := e.do(req{Method: "PUT", Path: "/v1/skus/bad-body", Token: e.admin, Body: body})
			r.wantProblem(t, 400, revguard.CodeInvalidRequest)
			golden(t, "problem_invalid_request_"+name, r.Body)
		}
		e.do(req{Method: "PUT", Path: "/v1/skus/bad-body", Token: e.admin}).wantProblem(t, 400, revguard.CodeInvalidRequest)
		e.do(req{Method: "GET", Path: "/v1/skus/bad-body", Token: e.admin}).wantProblem(t, 404, revguard.CodeSKUNotFound)
	})
	t.Run("ErrUnsupportedMediaType", func(t *testing.T) {
		e := e.with(t)
		r := e.do(req{Method: "PUT", Path: "/v1/skus/media", Token: e.admin, Body: `{"stock":1}`, NoCType: true})
		r.wantProblem(t, 415, revguard.CodeUnsupportedMediaType)
		golden(t, "problem_unsupported_media_type", r.Body)
		r = e.do(req{Method: "PUT", Path: "/v1/skus/media", Token: e.admin, Body: `stock=1`,
			Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
		r.wantProblem(t, 415, revguard.CodeUnsupportedMediaType)
		// A compressed body: 415, saying that bodies have no content coding.
		r = e.do(req{Method: "PUT", Path: "/v1/skus/media", Token: e.admin, Body: `{"stock":1}`,
			Header: map[string]string{"Content-Encoding": "gzip"}})
		r.wantProblem(t, 415, revguard.CodeUnsupportedMediaType)
		if got := r.Header.Get("Accept-Encoding"); got != "identity" {
			t.Errorf("415 for a content coding: Accept-Encoding %q, want identity", got)
		}
		e.do(req{Method: "GET", Path: "/v1/skus/media", Token: e.admin}).wantProblem(t, 404, revguard.CodeSKUNotFound)
		r = e.do(req{Method: "PUT", Path: "/v1/skus/media", Token: e.admin, Body: `{"stock":1}`,
			Header: map[string]string{"Content-Type": "application/json; charset=utf-8"}})
		r.json(t, 201, &sku{})
		// The token comes first (docs/api.md's order of checks: session, request shape).
		e.do(req{Method: "PUT", Path: "/v1/skus/media", Body: `stock`,
			Header: map[string]string{"Content-Type": "text/plain"}}).wantProblem(t, 401, revguard.CodeUnauthenticated)
		// The rule holds on routes that read no body too; a JSON body there is ignored.
		e.do(req{Method: "GET", Path: "/v1/skus/media", Token: e.admin, Body: `{}`}).json(t, 200, &sku{})
		// Every GET, in the same order as the others: the token, then its kind, then
		// the body's headers; a public GET checks the body at once.
		var doc struct {
			Paths map[string]struct {
				Get *struct {
					Security []map[string][]string `json:"security"`
				} `json:"get"`
			} `json:"paths"`
		}
		if err := json.Unmarshal(e.do(req{Method: "GET", Path: "/v1/openapi.json"}).Body, &doc); err != nil {
			t.Fatal(err)
		}
		cust := e.session("c-media")
		text := map[string]string{"Content-Type": "text/plain"}
		gets := 0
		for path, item := range doc.Paths {
			op := item.Get
			if op == nil {
				continue
			}
			gets++
			path = strings.NewReplacer("{sku}", "media", "{id}", "01JDQ0000000000000000000AA", "{file}", "app.js").Replace(path)
			if len(op.Security) == 0 {
				if e.do(req{Method: "GET", Path: path}).Status == 404 {
					continue // a part this server leaves out (the storefront example)
				}
				e.do(req{Method: "GET", Path: path, Body: "x", Header: text}).wantProblem(t, 415, revguard.CodeUnsupportedMediaType)
				continue
			}
			e.do(req{Method: "GET", Path: path, Body: "x", Header: text}).wantProblem(t, 401, revguard.CodeUnauthenticated)
			unsupported := 0
			for _, token := range []string{e.admin, cust} {
				r := e.do(req{Method: "GET", Path: path, Token: token, Body: "x", Header: text})
				if r.Status == 403 {
					r.wantProblem(t, 403, revguard.CodeForbidden) // the other kind of token
					continue
				}
				r.wantProblem(t, 415, revguard.CodeUnsupportedMediaType)
				unsupported++
			}
			if unsupported == 0 {
				t.Errorf("GET %s: no token got past the 403", path)
			}
		}
		if gets < 15 {
			t.Fatalf("only %d GET operations in the document", gets)
		}
	})
	t.Run("ErrBodyTooLarge", func(t *testing.T) {
		e := e.with(t)
		big := `{"stock":1,"opens_at":null` + strings.Repeat(" ", httpapi.MaxBodyBytes) + `}`
		r := e.do(req{Method: "PUT", Path: "/v1/skus/big", Token: e.admin, Body: big})
		r.wantProblem(t, 413, revguard.CodeBodyTooLarge)
		golden(t, "problem_body_too_large", r.Body)
		// Without a Content-Length (chunked), the limit holds too.
		hr, _ := http.NewRequest("PUT", e.base+"/v1/skus/big", io.MultiReader(strings.NewReader(big)))
		hr.Header.Set("Authorization", "Bearer "+e.admin)
		hr.Header.Set("Content-Type", "application/json")
		resp, err := e.hc.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 || resp.ContentLength < 0 && resp.TransferEncoding == nil {
			t.Fatalf("chunked oversized body: %d", resp.StatusCode)
		}
		e.do(req{Method: "GET", Path: "/v1/skus/big", Token: e.admin}).wantProblem(t, 404, revguard.CodeSKUNotFound)
	})
	t.Run("ErrStockBelowCommitted", func(t *testing.T) {
		e := e.with(t)
		e.putSKU("committed", `{"stock":3,"per_customer_limit":3}`)
		tok := e.session("c-commit")
		e.mustReserve(tok, "committed", `{"quantity":2}`, nil)
		r := e.do(req{Method: "PUT", Path: "/v1/skus/committed", Token: e.admin, Body: `{"stock":1,"per_customer_limit":3}`})
		r.wantProblem(t, 409, revguard.CodeStockBelowCommitted)
		golden(t, "problem_stock_below_committed", r.Body)
		if s := e.checkInvariant("committed"); s.Stock != 3 || s.Held != 2 {
			t.Fatalf("refused PUT changed the SKU: %+v", s)
		}
		// A restock makes the new units available at once.
		e.putSKU("committed", `{"stock":10,"per_customer_limit":3}`)
		if s := e.checkInvariant("committed"); s.Available != 8 || s.Held != 2 {
			t.Fatalf("after restock %+v", s)
		}
	})
}
