package httpapi_test

import (
	"bytes"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/httpapi/openapitest"
)

// TestReserveLane sends each request of a case to two servers of one API, one with
// the reserve lane (HTTPServer's own answer of the hot path) and one without it, each
// time as a new customer of its own, and checks that the two answers are the same:
// status, header fields and body (ids and times aside). It also checks that the lane
// answers the requests it is for, and leaves the others to the general path.
func TestReserveLane(t *testing.T) { eachBackend(t, testReserveLane) }

func testReserveLane(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b, botCheck: true, customerRate: revguard.Rate{N: 3, Per: time.Hour}})
	e.putSKU("lane", `{"stock":1000,"per_customer_limit":2}`)
	e.putSKU("gone", `{"stock":0,"per_customer_limit":2}`)
	cfg := httpapi.HTTPConfig{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	var general atomic.Int64 // the lane server's requests that went the general path
	servers := []*testServer{
		serveHTTPServer(t, e.api.NewHTTPServerForTest(cfg, true, &general)),
		serveHTTPServer(t, e.api.NewHTTPServerForTest(cfg, false, nil)),
	}
	var clients []*client
	for _, ts := range servers {
		hc := ts.Client()
		hc.Timeout = 30 * time.Second
		openapitest.Wrap(hc)
		clients = append(clients, &client{tb: t, base: ts.URL, hc: hc})
	}
	// hdr is a fresh Turnstile token's header (a token passes once) with more fields.
	hdr := func(kv ...string) map[string]string {
		m := e.tokenHeader()
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	post := func(token, sku, body string, h map[string]string) req {
		return req{Method: "POST", Path: "/v1/skus/" + sku + "/reservations", Token: token, Body: body, Header: h}
	}
	cases := []struct {
		name string
		lane bool                        // the lane answers every request of the case
		reqs func(customer string) []req // with the customer's session token
	}{
		{"Reserve", true, func(c string) []req { return []req{post(c, "lane", `{"quantity":1}`, hdr())} }},
		{"BodyToken", true, func(c string) []req {
			return []req{post(c, "lane", `{"quantity":1,"turnstile_token":"`+e.verifier.Token()+`"}`, nil)}
		}},
		{"ClientRequestID", true, func(c string) []req {
			return []req{post(c, "lane", `{"quantity":1}`, hdr("X-Request-Id", "lane-test-0001"))}
		}},
		{"Replay", true, func(c string) []req {
			return []req{post(c, "lane", `{}`, hdr("Idempotency-Key", "k-1")), post(c, "lane", `{}`, hdr("Idempotency-Key", "k-1"))}
		}},
		{"KeyReused", true, func(c string) []req {
			return []req{post(c, "lane", `{"quantity":1}`, hdr("Idempotency-Key", "k-2")), post(c, "lane", `{"quantity":2}`, hdr("Idempotency-Key", "k-2"))}
		}},
		{"CustomerLimit", true, func(c string) []req {
			return []req{post(c, "lane", `{"quantity":2}`, hdr()), post(c, "lane", `{"quantity":1}`, hdr())}
		}},
		{"SoldOut", true, func(c string) []req { return []req{post(c, "gone", `{"quantity":1}`, hdr())} }},
		{"UnknownSKU", true, func(c string) []req { return []req{post(c, "nope", `{"quantity":1}`, hdr())} }},
		{"OverSKULimit", true, func(c string) []req { return []req{post(c, "lane", `{"quantity":3}`, hdr())} }},
		{"NoBotToken", true, func(c string) []req { return []req{post(c, "lane", `{"quantity":1}`, nil)} }},
		{"BadBotToken", true, func(c string) []req {
			return []req{post(c, "lane", `{"quantity":1}`, map[string]string{"CF-Turnstile-Response": "forged"})}
		}},
		{"RateLimited", true, func(c string) []req {
			r := post(c, "gone", `{"quantity":1}`, nil)
			return []req{r, r, r, r} // the fourth is over 3 an hour, with its Retry-After
		}},
		{"NoAuthorization", false, func(string) []req { return []req{post("", "lane", `{"quantity":1}`, hdr())} }},
		{"UnknownToken", false, func(string) []req { return []req{post("nope", "lane", `{"quantity":1}`, hdr())} }},
		{"AdminToken", false, func(string) []req { return []req{post(e.admin, "lane", `{"quantity":1}`, hdr())} }},
		{"NotJSON", false, func(c string) []req {
			return []req{post(c, "lane", `{"quantity":1}`, hdr("Content-Type", "text/plain"))}
		}},
		{"OtherJSONType", false, func(c string) []req {
			return []req{post(c, "lane", `{"quantity":1}`, hdr("Content-Type", "application/json; charset=UTF-8"))}
		}},
		{"BadJSON", false, func(c string) []req { return []req{post(c, "lane", `{"quantity":`, hdr())} }},
		{"EmptyBody", false, func(c string) []req { return []req{post(c, "lane", ``, hdr())} }},
		{"BadKey", false, func(c string) []req {
			return []req{post(c, "lane", `{}`, hdr("Idempotency-Key", strings.Repeat("k", 300)))}
		}},
		{"BadSKU", false, func(c string) []req { return []req{post(c, "bad%20sku", `{}`, hdr())} }},
		{"Query", false, func(c string) []req { return []req{post(c, "lane?x=1", `{}`, hdr())} }},
	}
	for _, tc := range cases {
		var answers [2][]*response
		for i, cl := range clients {
			customer := e.session([]string{"A-", "B-"}[i] + tc.name) // sameBody tells them apart
			before := general.Load()
			for _, r := range tc.reqs(customer) {
				answers[i] = append(answers[i], cl.do(r))
			}
			if i == 0 {
				went := general.Load() - before
				if tc.lane && went != 0 || !tc.lane && went != int64(len(answers[0])) {
					t.Errorf("%s: %d of %d requests went the general path, want %s", tc.name, went, len(answers[0]),
						map[bool]string{true: "none", false: "all"}[tc.lane])
				}
			}
		}
		for k := range answers[0] {
			a, g := answers[0][k], answers[1][k]
			if a.Status != g.Status || !maps.EqualFunc(comparableHeader(a.Header), comparableHeader(g.Header), slices.Equal) ||
				!bytes.Equal(sameBody(a.Body), sameBody(g.Body)) {
				t.Errorf("%s, request %d: the lane answered\n%d %v %s\nthe general path\n%d %v %s", tc.name, k+1,
					a.Status, a.Header, a.Body, g.Status, g.Header, g.Body)
			}
		}
	}
	if s := e.checkInvariant("lane"); s.Held == 0 {
		t.Fatalf("no hold was made: %+v", s)
	}
}

var (
	reservationPath = regexp.MustCompile(`^/v1/reservations/[0-9A-Za-z]+$`)
	laneCustomer    = regexp.MustCompile(`"customer_id":"[AB]-`)
)

// sameBody is a body normalized (golden's normalize) and without the mark of the
// customer: the two servers' answers to one case are the same sameBody.
func sameBody(b []byte) []byte {
	return laneCustomer.ReplaceAll(normalize(b), []byte(`"customer_id":"X-`))
}

// comparableHeader is h without what differs between two equal answers: the Date,
// the length (the bodies are compared apart), and a server-made request id or a
// reservation's own id in Location.
func comparableHeader(h map[string][]string) map[string][]string {
	c := maps.Clone(h)
	delete(c, "Date")
	delete(c, "Content-Length")
	if id := c["X-Request-Id"]; len(id) == 1 && id[0] != "lane-test-0001" {
		c["X-Request-Id"] = []string{"<server's>"}
	}
	if l := c["Location"]; len(l) == 1 && reservationPath.MatchString(l[0]) {
		c["Location"] = []string{"/v1/reservations/<id>"}
	}
	return c
}
