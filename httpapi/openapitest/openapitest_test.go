package openapitest_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/revenueguard/revguard/httpapi/openapitest"
)

const (
	reservation = `{"id":"01J","sku":"s","customer_id":"c","quantity":1,"status":"held","created_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:10:00Z","confirmed_at":null,"released_at":null,"order_ref":null}`
	soldOut     = `{"type":"urn:revguard:problem:sold_out","title":"Sold out","status":409,"detail":"no units are available","code":"sold_out"}`
	notFound    = `{"type":"urn:revguard:problem:not_found","title":"Not found","status":404,"detail":"no such endpoint","code":"not_found"}`
)

// answer is what the fake server sends back.
type answer struct {
	status  int
	ctype   string
	headers map[string]string
	body    string
}

const unsupported = `{"type":"urn:revguard:problem:unsupported_media_type","title":"Unsupported media type","status":415,"detail":"Content-Type must be application/json","code":"unsupported_media_type"}`

// TestTransport checks that the validator refuses what the document does not describe,
// and lets through what it does: each case sends one request through a validating
// client to a server that answers as told.
func TestTransport(t *testing.T) {
	ok := func(a answer) answer {
		if a.headers == nil {
			a.headers = map[string]string{}
		}
		a.headers["X-Request-Id"] = "r1"
		return a
	}
	reserve := func(body string) *http.Request {
		r, _ := http.NewRequest("POST", "/v1/skus/s/reservations", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer tok")
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	get := func(path string) *http.Request { r, _ := http.NewRequest("GET", path, nil); return r }
	getBody := func(path, body string) *http.Request {
		r, _ := http.NewRequest("GET", path, strings.NewReader(body))
		r.Header.Set("Content-Type", "text/plain")
		return r
	}
	for _, tc := range []struct {
		name  string
		req   *http.Request
		ans   answer
		valid bool
	}{
		{"OKReserved", reserve(`{"quantity":1}`), ok(answer{201, "application/json; charset=utf-8", map[string]string{"Location": "/v1/reservations/01J"}, reservation}), true},
		{"OKSoldOut", reserve(`{"quantity":1}`), ok(answer{409, "application/problem+json", nil, soldOut}), true},
		{"OKUnrouted404", get("/v1/nope"), ok(answer{404, "application/problem+json", nil, notFound}), true},
		{"OKRefusedInvalidRequest", reserve(`{"bogus":1}`), ok(answer{409, "application/problem+json", nil, soldOut}), true},
		{"ErrNoRequestID", reserve(`{}`), answer{409, "application/problem+json", nil, soldOut}, false},
		{"ErrMissingMember", reserve(`{}`), ok(answer{201, "application/json", map[string]string{"Location": "/x"}, strings.Replace(reservation, `"order_ref":null`, `"extra":1`, 1)}), false},
		{"ErrNoLocation", reserve(`{}`), ok(answer{201, "application/json", nil, reservation}), false},
		{"ErrCodeOfAnotherStatus", reserve(`{}`), ok(answer{409, "application/problem+json", nil, strings.ReplaceAll(soldOut, "sold_out", "hold_expired")}), false},
		{"ErrUndocumentedStatus", reserve(`{}`), ok(answer{418, "application/problem+json", nil, soldOut}), false},
		{"ErrWrongContentType", reserve(`{}`), ok(answer{409, "application/json", nil, soldOut}), false},
		{"Err503WithoutRetryAfter", reserve(`{}`), ok(answer{503, "application/problem+json", nil, strings.NewReplacer("409", "503", "sold_out", "unavailable").Replace(soldOut)}), false},
		{"ErrAcceptedInvalidRequest", reserve(`{"bogus":1}`), ok(answer{201, "application/json", map[string]string{"Location": "/x"}, reservation}), false},
		{"ErrUnrouted405WithoutAllow", get("/v1/sessions"), ok(answer{405, "application/problem+json", nil, strings.NewReplacer("404", "405", "not_found", "method_not_allowed").Replace(notFound)}), false},
		{"ErrUnroutedSuccess", get("/v1/nope"), ok(answer{200, "application/json", nil, `{}`}), false},
		// 413, 415 and 431 may answer any operation (the document says so once).
		{"OKAnyOperation415", getBody("/v1/skus/s", "x"), ok(answer{415, "application/problem+json", nil, unsupported}), true},
		{"ErrAnyOperation415NoBody", get("/v1/skus/s"), ok(answer{415, "application/problem+json", nil, unsupported}), false},
		{"ErrAnyOperation415WrongCode", getBody("/v1/skus/s", "x"), ok(answer{415, "application/problem+json", nil, strings.ReplaceAll(unsupported, "unsupported_media_type", "invalid_request")}), false},
		{"ErrAnyOperation415NotAProblem", getBody("/v1/skus/s", "x"), ok(answer{415, "text/plain", nil, "no"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.ans.headers {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", tc.ans.ctype)
				w.WriteHeader(tc.ans.status)
				w.Write([]byte(tc.ans.body))
			}))
			defer srv.Close()
			hc := openapitest.Wrap(srv.Client())
			req := tc.req.Clone(t.Context())
			req.URL.Scheme, req.URL.Host = "http", srv.Listener.Addr().String()
			if tc.req.Body != nil {
				req.Body = tc.req.Body
			}
			resp, err := hc.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			var verr *openapitest.ValidationError
			switch {
			case tc.valid && err != nil:
				t.Fatalf("refused a valid exchange: %v", err)
			case !tc.valid && !errors.As(err, &verr):
				t.Fatalf("let an invalid exchange through: err %v", err)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}
