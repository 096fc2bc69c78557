package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
)

// The client's behaviour against a real server is tested end to end in cmd/revguard
// (TestClient_EveryEndpoint) and by the load test; these tests inject the faults a
// real server does not produce on demand: 503s, lost connections, foreign answers.

const (
	reservation      = `{"id":"01J","sku":"s","customer_id":"c","quantity":1,"status":"held","created_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:10:00Z","confirmed_at":null,"released_at":null,"order_ref":null}`
	unavailableStore = `{"type":"urn:revguard:problem:unavailable","title":"Unavailable","status":503,"detail":"a store did not answer","code":"unavailable"}`
	unavailable      = `{"type":"urn:revguard:problem:bot_check_unavailable","title":"Bot check unavailable","status":503,"detail":"the verifier did not answer","code":"bot_check_unavailable"}`
)

// recorder is a fake server that answers with the next of its answers and records
// what it was sent.
type recorder struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter, r *http.Request)
	reqs    []*http.Request
	bodies  []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	i := len(rec.reqs)
	rec.reqs = append(rec.reqs, r)
	rec.bodies = append(rec.bodies, string(b))
	rec.mu.Unlock()
	if i >= len(rec.answers) {
		i = len(rec.answers) - 1
	}
	rec.answers[i](w, r)
}

// seen returns the requests and bodies received so far.
func (rec *recorder) seen() ([]*http.Request, []string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.reqs), slices.Clone(rec.bodies)
}

func answer(status int, ctype, body string, hdr ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// hangUp closes the connection without an answer: a lost connection.
func hangUp(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func mustClient(t *testing.T, h http.Handler, opts ...client.Option) *client.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL+"/", append([]client.Option{client.WithDoer(srv.Client()), client.WithToken("tok")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReserve(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){
			answer(201, "application/json", reservation, "Location", "/v1/reservations/01J", "Idempotent-Replayed", "true", "X-Request-Id", "rq-1"),
		}}
		c := mustClient(t, rec)
		res, err := c.Reserve(t.Context(), "s", client.ReserveParams{Quantity: 2, TurnstileToken: "ts", IdempotencyKey: "k1"})
		if err != nil {
			t.Fatal(err)
		}
		if res.ID != "01J" || res.Status != revguard.StatusHeld || !res.Meta.Replayed() || res.Meta.RequestID() != "rq-1" || res.Meta.StatusCode != 201 ||
			!res.ExpiresAt.Equal(time.Date(2026, 11, 27, 10, 10, 0, 0, time.UTC)) || !res.ConfirmedAt.IsZero() || res.OrderRef != "" {
			t.Fatalf("reservation %+v", res)
		}
		reqs, bodies := rec.seen()
		r := reqs[0]
		if r.Method != "POST" || r.URL.Path != "/v1/skus/s/reservations" || r.Header.Get("Authorization") != "Bearer tok" ||
			r.Header.Get("Idempotency-Key") != "k1" || r.Header.Get("CF-Turnstile-Response") != "ts" ||
			r.Header.Get("Content-Type") != "application/json" || bodies[0] != `{"quantity":2}` {
			t.Fatalf("request %s %s %v body %s", r.Method, r.URL, r.Header, bodies[0])
		}
	})
	t.Run("OKGeneratedKeyKeptAcrossRetries", func(t *testing.T) {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){
			answer(503, "application/problem+json", unavailable, "Retry-After", "0"),
			hangUp,
			answer(201, "application/json", reservation),
		}}
		c := mustClient(t, rec)
		if _, err := c.Reserve(t.Context(), "s", client.ReserveParams{}); err != nil {
			t.Fatal(err)
		}
		reqs, bodies := rec.seen()
		if len(reqs) != 3 {
			t.Fatalf("%d attempts, want 3", len(reqs))
		}
		key := reqs[0].Header.Get("Idempotency-Key")
		if !strings.HasPrefix(key, "rg-") || len(key) < 20 {
			t.Fatalf("generated key %q", key)
		}
		for i, r := range reqs {
			if r.Header.Get("Idempotency-Key") != key || bodies[i] != "" {
				t.Fatalf("attempt %d: key %q body %q, want %q and no body", i, r.Header.Get("Idempotency-Key"), bodies[i], key)
			}
		}
		if _, err := c.Reserve(t.Context(), "s", client.ReserveParams{}); err != nil {
			t.Fatal(err)
		}
		reqs, _ = rec.seen()
		if k := reqs[3].Header.Get("Idempotency-Key"); k == key {
			t.Fatalf("a new call reused the key %q", k)
		}
	})
	t.Run("ErrProblem", func(t *testing.T) {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){
			answer(409, "application/problem+json", `{"type":"urn:revguard:problem:sold_out","title":"Sold out","status":409,"detail":"no units are available","code":"sold_out"}`, "X-Request-Id", "rq-2"),
		}}
		c := mustClient(t, rec)
		for range 2 { // the second decode comes from the memo
			_, err := c.Reserve(t.Context(), "s", client.ReserveParams{})
			e, ok := errors.AsType[*client.Error](err)
			if !ok || e.StatusCode != 409 || e.Code != revguard.CodeSoldOut || e.Detail != "no units are available" ||
				e.Title != "Sold out" || e.RequestID != "rq-2" || client.ErrorCode(err) != revguard.CodeSoldOut {
				t.Fatalf("error %#v", err)
			}
		}
		reqs, _ := rec.seen()
		if len(reqs) != 2 {
			t.Fatalf("a 409 was retried: %d requests", len(reqs))
		}
	})
	t.Run("Err503AfterRetries", func(t *testing.T) {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){answer(503, "application/problem+json", unavailable, "Retry-After", "0")}}
		c := mustClient(t, rec, client.WithRetries(1))
		_, err := c.Reserve(t.Context(), "s", client.ReserveParams{})
		if e, ok := errors.AsType[*client.Error](err); !ok || e.Code != revguard.CodeBotCheckUnavailable || e.RetryAfter != 0 {
			t.Fatalf("error %v", err)
		}
		reqs, _ := rec.seen()
		if len(reqs) != 2 {
			t.Fatalf("%d attempts, want 2", len(reqs))
		}
	})
	t.Run("ErrRetryAfterTooLong", func(t *testing.T) {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){answer(503, "application/problem+json", unavailable, "Retry-After", "60")}}
		c := mustClient(t, rec, client.WithMaxRetryWait(time.Second))
		_, err := c.Reserve(t.Context(), "s", client.ReserveParams{})
		reqs, _ := rec.seen()
		if e, ok := errors.AsType[*client.Error](err); !ok || e.RetryAfter != time.Minute || len(reqs) != 1 {
			t.Fatalf("error %v after %d attempts, want one attempt and Retry-After 60 s", err, len(reqs))
		}
	})
	t.Run("ErrContextBoundsTheWait", func(t *testing.T) {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){answer(503, "application/problem+json", unavailable, "Retry-After", "5")}}
		c := mustClient(t, rec)
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Reserve(ctx, "s", client.ReserveParams{})
		reqs, _ := rec.seen()
		if client.ErrorCode(err) != revguard.CodeBotCheckUnavailable || len(reqs) != 1 || time.Since(start) > 4*time.Second {
			t.Fatalf("error %v after %d attempts and %v", err, len(reqs), time.Since(start))
		}
	})
	t.Run("ErrNotAProblem", func(t *testing.T) {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){answer(502, "text/html", "<h1>Bad gateway</h1>")}}
		c := mustClient(t, rec)
		_, err := c.Reserve(t.Context(), "s", client.ReserveParams{})
		if e, ok := errors.AsType[*client.Error](err); !ok || e.StatusCode != 502 || e.Code != "" || e.Detail != "Bad Gateway" {
			t.Fatalf("error %#v", err)
		}
	})
	t.Run("ErrUndecodable", func(t *testing.T) {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){answer(201, "application/json", `{"id":`)}}
		c := mustClient(t, rec)
		_, err := c.Reserve(t.Context(), "s", client.ReserveParams{})
		if err == nil || client.ErrorCode(err) != "" || !strings.Contains(err.Error(), "decode") {
			t.Fatalf("error %v", err)
		}
	})
}

// TestNoRetryUnlessSafe checks that a call that is not safe to send twice (issuing a
// session) is sent once, after a lost connection and after a 503 alike (a store that
// did not answer may have made it).
func TestNoRetryUnlessSafe(t *testing.T) {
	for _, first := range []func(http.ResponseWriter, *http.Request){
		hangUp,
		answer(503, "application/problem+json", unavailableStore, "Retry-After", "0"),
	} {
		rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){
			first,
			answer(201, "application/json", `{"token":"t","customer_id":"c","expires_at":"2026-11-27T11:00:00Z"}`),
		}}
		c := mustClient(t, rec)
		if _, err := c.CreateSession(t.Context(), client.SessionParams{CustomerID: "c"}); err == nil {
			t.Fatal("CreateSession succeeded; want the first attempt's error")
		}
		if reqs, _ := rec.seen(); len(reqs) != 1 {
			t.Fatalf("%d attempts, want 1", len(reqs))
		}
	}
}

// TestRetrySpentToken: a reserve or a join carries a single-use Turnstile token, which
// an attempt that reached the server may have spent. A retry refused with
// bot_check_failed is reported as the attempt before it (so the caller retries with a
// new token and the same key), while a first refusal, or one without a token, is
// reported as it is.
func TestRetrySpentToken(t *testing.T) {
	refused := answer(403, "application/problem+json", `{"type":"urn:revguard:problem:bot_check_failed","title":"Bot check failed","status":403,"detail":"timeout-or-duplicate","code":"bot_check_failed"}`)
	for _, tc := range []struct {
		name  string
		first func(http.ResponseWriter, *http.Request)
		token string
		want  revguard.Code // "": a transport error
	}{
		{"After503", answer(503, "application/problem+json", unavailableStore, "Retry-After", "0"), "ts", revguard.CodeUnavailable},
		{"AfterLostConnection", hangUp, "ts", ""},
		{"NoToken", answer(503, "application/problem+json", unavailableStore, "Retry-After", "0"), "", revguard.CodeBotCheckFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, call := range []func(c *client.Client) error{
				func(c *client.Client) error {
					_, err := c.Reserve(t.Context(), "s", client.ReserveParams{TurnstileToken: tc.token, IdempotencyKey: "k"})
					return err
				},
				func(c *client.Client) error { _, err := c.JoinWaitingRoom(t.Context(), "s", tc.token); return err },
			} {
				rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){tc.first, refused}}
				err := call(mustClient(t, rec))
				if reqs, _ := rec.seen(); len(reqs) != 2 {
					t.Fatalf("%d attempts, want 2", len(reqs))
				}
				if got := client.ErrorCode(err); err == nil || got != tc.want {
					t.Fatalf("error %v (code %q); want code %q", err, got, tc.want)
				}
			}
		})
	}
	rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){refused}}
	if _, err := mustClient(t, rec).Reserve(t.Context(), "s", client.ReserveParams{TurnstileToken: "ts"}); client.ErrorCode(err) != revguard.CodeBotCheckFailed {
		t.Fatalf("a first refusal: %v; want bot_check_failed", err)
	}
}

// TestRetryDone: a logout or a room's deletion is retried after a 503, and a retry
// answered 401 unauthenticated or 404 waiting_room_not_found means an earlier attempt
// did it; the same answer to a first attempt is an error, and so is a proxy's 404.
func TestRetryDone(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone func(http.ResponseWriter, *http.Request)
		call func(c *client.Client) error
	}{
		{"Logout", answer(401, "application/problem+json", `{"type":"urn:revguard:problem:unauthenticated","title":"Unauthenticated","status":401,"code":"unauthenticated"}`),
			func(c *client.Client) error { return c.Logout(t.Context()) }},
		{"DeleteWaitingRoom", answer(404, "application/problem+json", `{"type":"urn:revguard:problem:waiting_room_not_found","title":"Not found","status":404,"code":"waiting_room_not_found"}`),
			func(c *client.Client) error { return c.DeleteWaitingRoom(t.Context(), "s") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){answer(503, "application/problem+json", unavailableStore, "Retry-After", "0"), tc.gone}}
			if err := tc.call(mustClient(t, rec)); err != nil {
				t.Fatalf("after a 503, then gone: %v; want nil", err)
			}
			if reqs, _ := rec.seen(); len(reqs) != 2 {
				t.Fatalf("%d attempts, want 2", len(reqs))
			}
			rec = &recorder{answers: []func(http.ResponseWriter, *http.Request){tc.gone}}
			if err := tc.call(mustClient(t, rec)); err == nil {
				t.Fatal("gone at the first attempt: nil; want the error")
			}
			// A retry answered by something else than the API (a proxy's page) is
			// no sign that the work was done.
			rec = &recorder{answers: []func(http.ResponseWriter, *http.Request){
				answer(503, "application/problem+json", unavailableStore, "Retry-After", "0"),
				answer(404, "text/html", "<h1>Not Found</h1>"),
			}}
			if err := tc.call(mustClient(t, rec)); err == nil {
				t.Fatal("a proxy's 404 on the retry: nil; want the error")
			}
		})
	}
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://x", "http://", "http://x?q=1"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := client.New("https://shop.example/api/")
	if err != nil || c.BaseURL() != "https://shop.example/api" {
		t.Fatalf("New: %v, base %q", err, c.BaseURL())
	}
}

// TestWithToken checks that a derived client sends its own token and the original
// keeps its own.
func TestWithToken(t *testing.T) {
	rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){answer(200, "application/json", `{"status":"ok"}`)}}
	admin := mustClient(t, rec)
	buyer := admin.WithToken("session-1")
	if err := buyer.Healthz(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := admin.Healthz(t.Context()); err != nil {
		t.Fatal(err)
	}
	reqs, _ := rec.seen()
	if a, b := reqs[0].Header.Get("Authorization"), reqs[1].Header.Get("Authorization"); a != "Bearer session-1" || b != "Bearer tok" {
		t.Fatalf("tokens sent %q, %q", a, b)
	}
}

// TestPaging checks the query of a listing and that AllOrders follows next_cursor.
func TestPaging(t *testing.T) {
	rec := &recorder{answers: []func(http.ResponseWriter, *http.Request){
		answer(200, "application/json", `{"items":[`+reservation+`],"next_cursor":"c2"}`),
		answer(200, "application/json", `{"items":[`+strings.Replace(reservation, "01J", "01K", 1)+`],"next_cursor":null}`),
	}}
	c := mustClient(t, rec)
	var ids []string
	for r, err := range c.AllOrders(t.Context(), client.OrderQuery{SKU: "s", Status: revguard.StatusHeld, Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "01J,01K" {
		t.Fatalf("ids %v", ids)
	}
	reqs, _ := rec.seen()
	if q := reqs[0].URL.RawQuery; q != "limit=1&sku=s&status=held" {
		t.Errorf("first query %q", q)
	}
	if q := reqs[1].URL.RawQuery; q != "cursor=c2&limit=1&sku=s&status=held" {
		t.Errorf("second query %q", q)
	}
}

// rawDoer is a RawDoer that answers from a function and records the requests.
type rawDoer struct {
	reqs   []client.RawRequest
	answer func(r *client.RawRequest) (client.RawResponse, error)
}

func (d *rawDoer) Do(*http.Request) (*http.Response, error) {
	return nil, errors.New("Do called on a RawDoer")
}

func (d *rawDoer) DoRaw(_ context.Context, r *client.RawRequest) (client.RawResponse, error) {
	d.reqs = append(d.reqs, *r)
	return d.answer(r)
}

// TestRawDoer checks that a Doer that is also a RawDoer gets the request's parts, and
// that its answers are decoded and retried as net/http's.
func TestRawDoer(t *testing.T) {
	n := 0
	d := &rawDoer{answer: func(r *client.RawRequest) (client.RawResponse, error) {
		if n++; n == 1 {
			return client.RawResponse{StatusCode: 503, Header: http.Header{"Content-Type": {"application/problem+json"}, "Retry-After": {"0"}}, Body: []byte(unavailable)}, nil
		}
		return client.RawResponse{StatusCode: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(reservation)}, nil
	}}
	c, err := client.New("http://127.0.0.1:1/base", client.WithDoer(d), client.WithToken("tok"), client.WithUserAgent("ua"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Reserve(t.Context(), "s", client.ReserveParams{Quantity: 1, TurnstileToken: "ts", IdempotencyKey: "k"})
	if err != nil || res.ID != "01J" || len(d.reqs) != 2 {
		t.Fatalf("reservation %+v, %v after %d requests", res, err, len(d.reqs))
	}
	r := d.reqs[1]
	want := "Content-Type application/json Authorization Bearer tok User-Agent ua Idempotency-Key k Cf-Turnstile-Response ts"
	if r.Method != "POST" || r.Path != "/v1/skus/s/reservations" || strings.Join(r.Header, " ") != want || string(r.Body) != `{"quantity":1}` {
		t.Fatalf("raw request %+v", r)
	}
}
