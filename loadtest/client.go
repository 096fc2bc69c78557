package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"
)

// maxAnswer bounds how much of an answer body is read: the largest legitimate one is an
// orders page of 1000 reservations.
const maxAnswer = 4 << 20

// client speaks the v1 API to one or several targets, round-robin.
type client struct {
	targets []string      // base URLs without a trailing slash
	fast    []*fastTarget // one per target when all are http://; nil: http serves
	admin   string        // admin bearer token
	http    *http.Client
	timeout time.Duration // per request
	now     func() time.Time
	next    atomic.Uint64

	dates    dateCache
	problems problemCache

	// serverTime is the latest server time seen in any answer (unix nanoseconds): a
	// lower bound of every target's clock from then on. The sold-out check uses it to
	// bound when a refusal was decided.
	serverTime atomic.Int64
}

// answer is what one request got.
type answer struct {
	status     int
	code       revguard.Code // the problem's code; "" on success
	detail     string
	date       time.Time     // the Date header, zero when absent
	retryAfter time.Duration // the Retry-After header of a 429
	replayed   bool          // Idempotent-Replayed: true
	body       []byte
	err        error // transport failure: the outcome is unknown
}

// failed reports whether the request could not be completed.
func (a answer) failed() bool { return a.err != nil }

// outcome names the answer for the outcome table: "201", "409 sold_out", "error".
func (a answer) outcome() (status int, code string) {
	if a.err != nil {
		return 0, "transport_error"
	}
	return a.status, string(a.code)
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// headers are the optional request headers of a reservation.
type headers struct {
	turnstile      string // CF-Turnstile-Response; "" sends none
	idempotencyKey string // Idempotency-Key; "" sends none
}

// do sends one request to the next target and reads the whole answer, so that the
// connection can be reused. body is JSON, nil for none. It goes through fasthttp
// (fastclient.go) when the targets are http://, else through net/http.
func (c *client) do(ctx context.Context, method, path, token string, h headers, body []byte) answer {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	i := (c.next.Add(1) - 1) % uint64(len(c.targets))
	if c.fast != nil {
		a := answer{}
		r := fastRequest{method: method, path: path, auth: token, turnstile: h.turnstile, idempotencyKey: h.idempotencyKey, body: body}
		if err := c.fast[i].roundTrip(ctx, &r, &a, &c.dates); err != nil {
			return answer{err: fmt.Errorf("%s %s: %w", method, path, err)}
		}
		if !a.date.IsZero() {
			c.sawServerTime(a.date)
		}
		if a.status >= 400 {
			a.code, a.detail = c.problems.decode(a.body)
		}
		return a
	}
	base := c.targets[i]
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return answer{err: fmt.Errorf("%s %s: %w", method, path, err)}
	}
	// The keys are canonical already: no Set, which would canonicalise them again.
	if body != nil {
		req.Header["Content-Type"] = contentTypeJSON
	}
	if token != "" {
		req.Header["Authorization"] = []string{"Bearer " + token}
	}
	if h.turnstile != "" {
		req.Header["Cf-Turnstile-Response"] = []string{h.turnstile}
	}
	if h.idempotencyKey != "" {
		req.Header["Idempotency-Key"] = []string{h.idempotencyKey}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{err: fmt.Errorf("%s %s: %w", method, path, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return answer{err: fmt.Errorf("%s %s: read answer: %w", method, path, err)}
	}
	if len(b) > maxAnswer {
		return answer{err: fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxAnswer)}
	}
	a := answer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true", body: b}
	if v := resp.Header["Date"]; len(v) > 0 {
		if d, ok := c.dates.parse(v[0]); ok {
			a.date = d
			c.sawServerTime(d)
		}
	}
	if v := resp.Header["Retry-After"]; len(v) > 0 {
		if s, err := strconv.Atoi(v[0]); err == nil && s >= 0 {
			a.retryAfter = time.Duration(s) * time.Second
		}
	}
	if resp.StatusCode >= 400 {
		a.code, a.detail = c.problems.decode(b)
	}
	return a
}

var contentTypeJSON = []string{"application/json"}

// dateCache parses Date headers, remembering the last one: it changes once a second,
// and the crowd's answers share it.
type dateCache struct {
	last atomic.Pointer[parsedDate]
}

type parsedDate struct {
	s string
	t time.Time
}

// parse parses an HTTP date, and reports false when v is not one.
func (dc *dateCache) parse(v string) (time.Time, bool) {
	if p := dc.last.Load(); p != nil && p.s == v {
		return p.t, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return time.Time{}, false
	}
	dc.last.Store(&parsedDate{s: v, t: t})
	return t, true
}

// parseBytes is parse of a header value in a read buffer.
func (dc *dateCache) parseBytes(v []byte) (time.Time, bool) {
	if p := dc.last.Load(); p != nil && p.s == string(v) {
		return p.t, true
	}
	return dc.parse(string(v))
}

// problemCache decodes problem documents, remembering the small ones it saw: the
// crowd's refusals are the same few documents over and over (409 sold_out above all),
// and a document always decodes to the same code and detail.
type problemCache struct {
	mu   sync.Mutex                             // serialises the writers of seen
	seen atomic.Pointer[map[string]problemMemo] // replaced, never changed, once stored
}

type problemMemo struct {
	code   revguard.Code
	detail string
}

// Bounds of the problem cache: documents up to maxMemoBody bytes, maxMemo of them.
const (
	maxMemoBody = 1024
	maxMemo     = 64
)

// decode returns decodeProblem(b), from the cache when b was seen.
func (pc *problemCache) decode(b []byte) (revguard.Code, string) {
	if len(b) > maxMemoBody {
		return decodeProblem(b)
	}
	seen := pc.seen.Load()
	if seen != nil {
		if m, ok := (*seen)[string(b)]; ok {
			return m.code, m.detail
		}
	}
	code, detail := decodeProblem(b)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	var next map[string]problemMemo
	if old := pc.seen.Load(); old == nil {
		next = make(map[string]problemMemo, 1)
	} else if len(*old) < maxMemo {
		next = maps.Clone(*old)
	} else {
		return code, detail
	}
	next[string(b)] = problemMemo{code: code, detail: detail}
	pc.seen.Store(&next)
	return code, detail
}

// sawServerTime raises the lower bound of the server's clock to t.
func (c *client) sawServerTime(t time.Time) {
	n := t.UnixNano()
	for {
		old := c.serverTime.Load()
		if n <= old || c.serverTime.CompareAndSwap(old, n) {
			return
		}
	}
}

// serverNow returns the lower bound of the server's clock, zero when none was seen.
func (c *client) serverNow() time.Time {
	if n := c.serverTime.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// decodeProblem returns the code and detail of a problem document; a body that is not
// one gets the code "bad_response".
func decodeProblem(b []byte) (revguard.Code, string) {
	var p problem
	if err := json.Unmarshal(b, &p); err != nil || p.Code == "" {
		return codeBadResponse, "the error answer is not a problem document"
	}
	return revguard.Code(p.Code), p.Detail
}

// codeBadResponse marks an answer that does not follow the API: an error without a
// problem document, or a success whose body does not decode.
const codeBadResponse revguard.Code = "bad_response"

// reservationJSON is the reservation object of API.md.
type reservationJSON struct {
	ID          string     `json:"id"`
	SKU         string     `json:"sku"`
	CustomerID  string     `json:"customer_id"`
	Quantity    int64      `json:"quantity"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
	ReleasedAt  *time.Time `json:"released_at"`
	OrderRef    *string    `json:"order_ref"`
}

// decodeReservation decodes and sanity-checks a reservation object.
func decodeReservation(b []byte) (reservationJSON, error) {
	var r reservationJSON
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode reservation: %w", err)
	}
	return r, r.check()
}

func (r reservationJSON) check() error {
	switch {
	case r.ID == "":
		return errors.New("reservation without an id")
	case !revguard.Status(r.Status).Valid():
		return fmt.Errorf("reservation %s: unknown status %q", r.ID, r.Status)
	case r.Quantity < 1:
		return fmt.Errorf("reservation %s: quantity %d", r.ID, r.Quantity)
	case r.CreatedAt.IsZero() || r.ExpiresAt.Before(r.CreatedAt):
		return fmt.Errorf("reservation %s: created_at %v, expires_at %v", r.ID, r.CreatedAt, r.ExpiresAt)
	}
	return nil
}

// skuJSON is the SKU object of API.md.
type skuJSON struct {
	SKU              string     `json:"sku"`
	Stock            int64      `json:"stock"`
	Available        int64      `json:"available"`
	Held             int64      `json:"held"`
	Sold             int64      `json:"sold"`
	PerCustomerLimit int64      `json:"per_customer_limit"`
	HoldSeconds      int64      `json:"hold_seconds"`
	OpensAt          *time.Time `json:"opens_at"`
}

// decodeSKU decodes a SKU object.
func decodeSKU(b []byte) (skuJSON, error) {
	var s skuJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode sku: %w", err)
	}
	if s.SKU == "" {
		return s, errors.New("sku object without an id")
	}
	return s, nil
}

// ordersPage is one page of GET /v1/orders.
type ordersPage struct {
	Items      []reservationJSON `json:"items"`
	NextCursor *string           `json:"next_cursor"`
}

// decodeOrders decodes an orders page and checks each item.
func decodeOrders(b []byte) (ordersPage, error) {
	var p ordersPage
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("decode orders page: %w", err)
	}
	if p.Items == nil {
		return p, errors.New("orders page without items")
	}
	for _, r := range p.Items {
		if err := r.check(); err != nil {
			return p, err
		}
	}
	if p.NextCursor != nil && *p.NextCursor == "" {
		return p, errors.New("orders page with an empty next_cursor")
	}
	return p, nil
}

// sessionJSON is the answer of POST /v1/sessions.
type sessionJSON struct {
	Token      string    `json:"token"`
	CustomerID string    `json:"customer_id"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// putSKU creates or updates the SKU.
func (c *client) putSKU(ctx context.Context, s Scenario) (skuJSON, answer, error) {
	body := mustJSON(map[string]int64{"stock": s.Stock, "per_customer_limit": s.Limit, "hold_seconds": s.HoldSeconds})
	a := c.do(ctx, http.MethodPut, "/v1/skus/"+s.SKU, c.admin, headers{}, body)
	if err := a.expect(http.StatusOK, http.StatusCreated); err != nil {
		return skuJSON{}, a, fmt.Errorf("create sku %s: %w", s.SKU, err)
	}
	sku, err := decodeSKU(a.body)
	return sku, a, err
}

// getSKU reads the exact state of a SKU.
func (c *client) getSKU(ctx context.Context, id string) (skuJSON, answer, error) {
	a := c.do(ctx, http.MethodGet, "/v1/skus/"+id, c.admin, headers{}, nil)
	if err := a.expect(http.StatusOK); err != nil {
		return skuJSON{}, a, fmt.Errorf("get sku %s: %w", id, err)
	}
	sku, err := decodeSKU(a.body)
	return sku, a, err
}

// createSession issues a session for a customer.
func (c *client) createSession(ctx context.Context, customerID string) (string, answer, error) {
	body := append(append([]byte(`{"customer_id":`), mustJSON(customerID)...), `,"ttl_seconds":3600}`...)
	a := c.do(ctx, http.MethodPost, "/v1/sessions", c.admin, headers{}, body)
	if err := a.expect(http.StatusCreated); err != nil {
		return "", a, fmt.Errorf("create session for %s: %w", customerID, err)
	}
	var s sessionJSON
	if err := json.Unmarshal(a.body, &s); err != nil || s.Token == "" {
		return "", a, fmt.Errorf("create session for %s: undecodable answer", customerID)
	}
	return s.Token, a, nil
}

// reserve asks for a hold. token is the bot-check token ("" sends none); key the
// idempotency key ("" sends none).
func (c *client) reserve(ctx context.Context, sku, session, token, key string, qty int64) answer {
	body := append(strconv.AppendInt([]byte(`{"quantity":`), qty, 10), '}')
	return c.do(ctx, http.MethodPost, "/v1/skus/"+sku+"/reservations", session,
		headers{turnstile: token, idempotencyKey: key}, body)
}

// confirm turns a hold into a sale.
func (c *client) confirm(ctx context.Context, session, id, orderRef string) answer {
	return c.do(ctx, http.MethodPost, "/v1/reservations/"+url.PathEscape(id)+"/confirm", session, headers{},
		mustJSON(map[string]string{"order_ref": orderRef}))
}

// release gives a hold back.
func (c *client) release(ctx context.Context, session, id string) answer {
	return c.do(ctx, http.MethodPost, "/v1/reservations/"+url.PathEscape(id)+"/release", session, headers{}, nil)
}

// orders reads every reservation of sku from the ledger, page by page. It also returns
// the Date of the first page: the ledger is at least as recent as that.
func (c *client) orders(ctx context.Context, sku string) ([]reservationJSON, time.Time, error) {
	var all []reservationJSON
	var date time.Time
	cursor := ""
	for page := 0; ; page++ {
		q := url.Values{"sku": {sku}, "limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		a := c.do(ctx, http.MethodGet, "/v1/orders?"+q.Encode(), c.admin, headers{}, nil)
		if err := a.expect(http.StatusOK); err != nil {
			return nil, date, fmt.Errorf("list orders page %d: %w", page, err)
		}
		if page == 0 {
			date = a.date
		}
		p, err := decodeOrders(a.body)
		if err != nil {
			return nil, date, fmt.Errorf("list orders page %d: %w", page, err)
		}
		all = append(all, p.Items...)
		if p.NextCursor == nil {
			return all, date, nil
		}
		if *p.NextCursor == cursor {
			return nil, date, fmt.Errorf("list orders page %d: next_cursor does not advance", page)
		}
		cursor = *p.NextCursor
	}
}

// mustJSON encodes v, a value of strings and numbers that always encodes.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("loadtest: encode %T: %v", v, err))
	}
	return b
}

// expect fails unless the answer has one of the statuses.
func (a answer) expect(statuses ...int) error {
	if a.err != nil {
		return a.err
	}
	for _, s := range statuses {
		if a.status == s {
			return nil
		}
	}
	detail := strings.TrimSpace(a.detail)
	if detail == "" {
		detail = http.StatusText(a.status)
	}
	return fmt.Errorf("status %d %s: %s", a.status, a.code, detail)
}
