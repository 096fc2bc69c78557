package httpapi_test

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/httpapi/openapitest"
)

// laneCase is a sequence of requests that TestReserveLane sends to a server with the
// reserve lane and to one without it.
type laneCase struct {
	name string
	lane bool // the lane answers every request of the case
	// reqs builds the case's requests for a customer's session token, on side 0 (the
	// lane) or 1; a side's requests must not touch the other side's state.
	reqs func(customer string, side int) []req
}

// TestReserveLane sends each request of a case to two servers of one API, one with
// the reserve lane (HTTPServer's own answer of the hot path) and one without it, each
// time as a new customer of its own, and checks that the two answers are the same:
// status, header fields and body (ids and times aside). It also checks that the lane
// answers the requests it is for and leaves the others to the general path, and that
// it counts its answers in the route's metrics.
func TestReserveLane(t *testing.T) { eachBackend(t, testReserveLane) }

func testReserveLane(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b, botCheck: true, customerRate: revguard.Rate{N: 3, Per: time.Hour}})
	e.putSKU("lane", `{"stock":1000,"per_customer_limit":2}`)
	e.putSKU("gone", `{"stock":0,"per_customer_limit":2}`)
	// hdr is a fresh Turnstile token's header (a token passes once) with more fields.
	hdr := func(kv ...string) map[string]string {
		m := e.tokenHeader()
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	one := func(f func(c string) req) func(string, int) []req {
		return func(c string, _ int) []req { return []req{f(c)} }
	}
	twoTokens := func(first, second string) func(string, int) []req {
		return one(func(c string) req {
			r := reservePost(c, "lane", `{"quantity":1}`, nil)
			r.Added = [][2]string{{"CF-Turnstile-Response", first}, {"CF-Turnstile-Response", second}}
			return r
		})
	}
	compareLane(t, e, []laneCase{
		{"Reserve", true, one(func(c string) req { return reservePost(c, "lane", `{"quantity":1}`, hdr()) })},
		{"EmptyBody", true, one(func(c string) req { return reservePost(c, "lane", ``, hdr()) })},
		{"BodyToken", true, one(func(c string) req {
			return reservePost(c, "lane", `{"quantity":1,"turnstile_token":"`+e.verifier.Token()+`"}`, nil)
		})},
		{"FirstBotTokenCounts", true, func(c string, s int) []req { return twoTokens(e.verifier.Token(), "forged")(c, s) }},
		{"FirstBotTokenForged", true, func(c string, s int) []req { return twoTokens("forged", e.verifier.Token())(c, s) }},
		{"ClientRequestID", true, one(func(c string) req {
			return reservePost(c, "lane", `{"quantity":1}`, hdr("X-Request-Id", "lane-test-0001"))
		})},
		{"Replay", true, func(c string, _ int) []req {
			return []req{reservePost(c, "lane", `{}`, hdr("Idempotency-Key", "k-1")), reservePost(c, "lane", `{}`, hdr("Idempotency-Key", "k-1"))}
		}},
		{"KeyKept", true, func(c string, _ int) []req {
			// A replay after another key on the same connection (fasthttp
			// reuses its buffers from one request to the next).
			return []req{reservePost(c, "lane", `{}`, hdr("Idempotency-Key", "key-aaaa")), reservePost(c, "lane", `{}`, hdr("Idempotency-Key", "key-bbbb")),
				reservePost(c, "lane", `{}`, hdr("Idempotency-Key", "key-aaaa"))}
		}},
		{"KeyReused", true, func(c string, _ int) []req {
			return []req{reservePost(c, "lane", `{"quantity":1}`, hdr("Idempotency-Key", "k-2")), reservePost(c, "lane", `{"quantity":2}`, hdr("Idempotency-Key", "k-2"))}
		}},
		{"CustomerLimit", true, func(c string, _ int) []req {
			return []req{reservePost(c, "lane", `{"quantity":2}`, hdr()), reservePost(c, "lane", `{"quantity":1}`, hdr())}
		}},
		{"SoldOut", true, one(func(c string) req { return reservePost(c, "gone", `{"quantity":1}`, hdr()) })},
		{"UnknownSKU", true, one(func(c string) req { return reservePost(c, "nope", `{"quantity":1}`, hdr()) })},
		{"OverSKULimit", true, one(func(c string) req { return reservePost(c, "lane", `{"quantity":3}`, hdr()) })},
		{"NoBotToken", true, one(func(c string) req { return reservePost(c, "lane", `{"quantity":1}`, nil) })},
		{"BadBotToken", true, one(func(c string) req {
			return reservePost(c, "lane", `{"quantity":1}`, map[string]string{"CF-Turnstile-Response": "forged"})
		})},
		{"RateLimited", true, func(c string, _ int) []req {
			r := reservePost(c, "gone", `{"quantity":1}`, nil)
			return []req{r, r, r, r} // the fourth is over 3 an hour, with its Retry-After
		}},
		{"UnknownToken", true, one(func(string) req { return reservePost("nope", "lane", `{"quantity":1}`, hdr()) })},
		{"AdminToken", true, one(func(string) req { return reservePost(e.admin, "lane", `{"quantity":1}`, hdr()) })},
		{"NoAuthorization", false, one(func(string) req { return reservePost("", "lane", `{"quantity":1}`, hdr()) })},
		{"NotJSON", false, one(func(c string) req {
			return reservePost(c, "lane", `{"quantity":1}`, hdr("Content-Type", "text/plain"))
		})},
		{"OtherJSONType", false, one(func(c string) req {
			return reservePost(c, "lane", `{"quantity":1}`, hdr("Content-Type", "application/json; charset=UTF-8"))
		})},
		{"Compressed", false, one(func(c string) req {
			return reservePost(c, "lane", `{"quantity":1}`, hdr("Content-Encoding", "gzip")) // 415, from the general path
		})},
		{"BadJSON", false, one(func(c string) req { return reservePost(c, "lane", `{"quantity":`, hdr()) })},
		{"BadKey", false, one(func(c string) req {
			return reservePost(c, "lane", `{}`, hdr("Idempotency-Key", strings.Repeat("k", 300)))
		})},
		{"BadSKU", false, one(func(c string) req { return reservePost(c, "bad%20sku", `{}`, hdr()) })},
		{"Query", false, one(func(c string) req {
			r := reservePost(c, "lane", `{}`, hdr())
			r.Path += "?x=1"
			return r
		})},
	})
	e.checkInvariant("lane")

	// Behind a trusted proxy, the client's address is X-Forwarded-For's, each side's
	// own, and the per-address limit counts them.
	p := mustOpenEnv(t, envOptions{backend: b, ipRate: revguard.Rate{N: 2, Per: time.Hour},
		edit: func(s *httpapi.Server) { s.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }})
	p.putSKU("lane", `{"stock":1000,"per_customer_limit":100}`)
	compareLane(t, p, []laneCase{
		{"ForwardedFor", true, func(c string, side int) []req {
			r := reservePost(c, "lane", `{}`, map[string]string{"X-Forwarded-For": "198.51.100." + strconv.Itoa(side+1)})
			return []req{r, r, r}
		}},
		{"ForwardedChain", true, func(c string, side int) []req {
			r := reservePost(c, "lane", `{}`, nil)
			r.Added = [][2]string{{"X-Forwarded-For", "192.0.2.7"}, {"X-Forwarded-For", "203.0.113." + strconv.Itoa(side+1) + ", 127.0.0.1"}}
			return []req{r, r, r}
		}},
	})
}

// reservePost is a reserve request of customer for sku.
func reservePost(customer, sku, body string, h map[string]string) req {
	return req{Method: "POST", Path: "/v1/skus/" + sku + "/reservations", Token: customer, Body: body, Header: h}
}

// compareLane runs each case on a server of e's API with the lane and on one without
// it, and compares their answers.
func compareLane(t *testing.T, e *env, cases []laneCase) {
	t.Helper()
	cfg := httpapi.HTTPConfig{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	var general atomic.Int64 // the lane server's requests that went the general path
	var clients []*client
	for _, srv := range []*httpapi.HTTPServer{e.api.NewHTTPServerForTest(cfg, true, &general), e.api.NewHTTPServerForTest(cfg, false, nil)} {
		ts := serveHTTPServer(t, srv)
		hc := ts.Client()
		hc.Timeout = 30 * time.Second
		openapitest.Wrap(hc)
		clients = append(clients, &client{tb: t, base: ts.URL, hc: hc})
	}
	for _, tc := range cases {
		var answers [2][]*response
		for side, cl := range clients {
			customer := e.session([]string{"A-", "B-"}[side] + tc.name) // sameBody tells them apart
			before, counted := general.Load(), reserveMetrics(e)
			for _, r := range tc.reqs(customer, side) {
				answers[side] = append(answers[side], cl.do(r))
			}
			if side > 0 {
				continue
			}
			went := general.Load() - before
			if tc.lane && went != 0 || !tc.lane && went != int64(len(answers[0])) {
				t.Errorf("%s: %d of %d requests went the general path, want %s", tc.name, went, len(answers[0]),
					map[bool]string{true: "none", false: "all"}[tc.lane])
			}
			want := maps.Clone(counted)
			for _, a := range answers[0] {
				want[strconv.Itoa(a.Status)]++
			}
			if got := reserveMetrics(e); !maps.Equal(got, want) {
				t.Errorf("%s: the reserve route's requests by status went from %v to %v, want %v", tc.name, counted, got, want)
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
}

// reserveMetrics reads the reserve route's request counts by status from /metrics.
func reserveMetrics(e *env) map[string]float64 {
	e.tb.Helper()
	const prefix = `revguard_http_requests_total{route="POST /v1/skus/{sku}/reservations",status="`
	counts := map[string]float64{}
	for line := range strings.Lines(string(e.do(req{Method: "GET", Path: "/metrics"}).Body)) {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		var status string
		var n float64
		if _, err := fmt.Sscanf(strings.Replace(rest, `"} `, " ", 1), "%s %g", &status, &n); err != nil {
			e.tb.Fatalf("metrics line %q: %v", line, err)
		}
		counts[status] = n
	}
	return counts
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
