package openapitest_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/httpapi/openapitest"
)

const (
	reservation = `{"id":"01J","sku":"s","customer_id":"c","quantity":1,"status":"held","created_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:10:00Z","confirmed_at":null,"released_at":null,"order_ref":null}`
	soldOut     = `{"type":"urn:revguard:problem:sold_out","title":"Sold out","status":409,"detail":"no units are available","code":"sold_out"}`
	room        = `{"sku":"s","pre_queue_seconds":60,"admit_per_second":10,"admission_seconds":null,"joined":3,"pre_queue":0,"waiting":0,"admitted":3,"used":0,"sold_out":false,"draw":{"seed":"0000000000000000000000000000000000000000000000000000000000000000","drawn_at":"2026-11-27T10:00:00Z","size":3}}`
	invalidSKU  = `{"type":"urn:revguard:problem:invalid_sku","title":"Invalid SKU id","status":400,"detail":"no","code":"invalid_sku"}`
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
	getAdmin := func(path string) *http.Request {
		r := get(path)
		r.Header.Set("Authorization", "Bearer admin")
		return r
	}
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
		{"ErrUndocumentedMember", reserve(`{}`), ok(answer{201, "application/json", map[string]string{"Location": "/x"}, strings.Replace(reservation, `}`, `,"extra":1}`, 1)}), false},
		{"ErrUndocumentedNestedMember", getAdmin("/v1/skus/s/waiting-room"), ok(answer{200, "application/json", nil, strings.Replace(room, `"size":3`, `"size":3,"extra":1`, 1)}), false},
		{"OKRoom", getAdmin("/v1/skus/s/waiting-room"), ok(answer{200, "application/json", nil, room}), true},
		{"OKProblemExtensionMember", reserve(`{}`), ok(answer{409, "application/problem+json", nil, strings.Replace(soldOut, `}`, `,"extra":1}`, 1)}), true},
		{"OKDotSKU", getAdmin("/v1/skus/."), ok(answer{400, "application/problem+json", nil, invalidSKU}), true},
		{"ErrDotSKUUnrouted", getAdmin("/v1/skus/./nope"), ok(answer{400, "application/problem+json", nil, invalidSKU}), false},
		{"ErrDotSKUAccepted", getAdmin("/v1/skus/%2E"), ok(answer{200, "application/json", nil, `{}`}), false},
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

// TestDocumentLeavesAnswersOpen checks the shipped document itself, not the closed copy
// the tests validate with: an answer with a member a later version may add is valid,
// so a client generated from the document accepts it, while a request with a member
// the document does not name is not (the server refuses it).
func TestDocumentLeavesAnswersOpen(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		schema, body string
		valid        bool
	}{
		{"Reservation", strings.Replace(reservation, `}`, `,"added_later":1}`, 1), true},
		{"WaitingRoom", strings.Replace(room, `"size":3`, `"size":3,"added_later":1`, 1), true},
		{"Problem", strings.Replace(soldOut, `}`, `,"added_later":1}`, 1), true},
		{"ReserveRequest", `{"quantity":1,"added_later":1}`, false},
		{"SKUSettings", `{"stock":1,"added_later":1}`, false},
	} {
		var v any
		if err := json.Unmarshal([]byte(tc.body), &v); err != nil {
			t.Fatal(err)
		}
		err := doc.Components.Schemas[tc.schema].Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
		if (err == nil) != tc.valid {
			t.Errorf("%s with a member it does not name: valid %v, want %v (%v)", tc.schema, err == nil, tc.valid, err)
		}
	}
}
