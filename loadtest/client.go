package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"
	rgclient "github.com/revenueguard/revguard/client"
)

// maxAnswer bounds how much of an answer body is read: the largest legitimate one is an
// orders page of 1000 reservations.
const maxAnswer = 4 << 20

// client speaks the v1 API to one or several targets, round-robin, through the client
// package: its typed calls build the requests and decode the answers, and the load
// test plugs in its own transport (fastclient.go) and does its own retries, recording
// every try.
type client struct {
	targets  []string           // base URLs without a trailing slash
	fast     []*fastTarget      // one per target when all are http://; nil: http serves
	apis     []*rgclient.Client // one per target, with the admin token
	admin    string             // admin bearer token
	http     *http.Client       // the transport of https:// targets, or the caller's
	timeout  time.Duration      // per request
	pipeline int                // connections per http:// target to pipeline over; 0: none
	now      func() time.Time
	next     atomic.Uint64

	dates dateCache

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
	date       time.Time        // the Date header, zero when absent
	retryAfter time.Duration    // the Retry-After header of a 429
	replayed   bool             // Idempotent-Replayed: true
	res        *reservationJSON // the reservation of a 200 or 201 of a reservation call
	body       []byte           // the body of a raw request (do)
	err        error            // transport failure: the outcome is unknown
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

// headers are the optional request headers of a raw request.
type headers struct {
	turnstile      string // CF-Turnstile-Response; "" sends none
	idempotencyKey string // Idempotency-Key; "" sends none
}

// api returns the client of the next target, with token. A customer's is made for
// each request: most of a drop's customers send one, and a map of a million sessions'
// clients cost the generator more to fill and to scan than the copies do.
func (c *client) api(token string) *rgclient.Client {
	i := (c.next.Add(1) - 1) % uint64(len(c.apis))
	if token == c.admin {
		return c.apis[i]
	}
	return c.apis[i].WithToken(token)
}

// ctx bounds a request of the net/http transport by the request timeout (fasthttp
// applies it itself).
func (c *client) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.fast != nil || c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// answerOf turns the outcome of a call of the client package into an answer: an
// *Error is an answer with its code (bad_response when it was not a problem document),
// a *MalformedError a success that does not follow the API, anything else a transport
// failure.
func (c *client) answerOf(m rgclient.Meta, err error) answer {
	var a answer
	switch e := err.(type) {
	case nil:
		a = answer{status: m.StatusCode}
	case *rgclient.Error:
		m = rgclient.Meta{StatusCode: e.StatusCode, Header: e.Header}
		a = answer{status: e.StatusCode, code: e.Code, detail: e.Detail, retryAfter: e.RetryAfter}
		if e.Code == "" {
			a.code, a.detail = codeBadResponse, "the error answer is not a problem document"
		}
	case *rgclient.MalformedError:
		m = e.Meta
		a = answer{status: m.StatusCode, code: codeBadResponse, detail: e.Err.Error()}
	default:
		return answer{err: err}
	}
	a.replayed = m.Replayed()
	if v := m.Header["Date"]; len(v) > 0 {
		if d, ok := c.dates.parse(v[0]); ok {
			a.date = d
			c.sawServerTime(d)
		}
	}
	return a
}

// do sends one raw request to the next target (the tests of the transports use it).
func (c *client) do(ctx context.Context, method, path, token string, h headers, body []byte) answer {
	hdr := http.Header{}
	if h.turnstile != "" {
		hdr["Cf-Turnstile-Response"] = []string{h.turnstile}
	}
	if h.idempotencyKey != "" {
		hdr["Idempotency-Key"] = []string{h.idempotencyKey}
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	m, b, err := c.api(token).Do(ctx, method, path, hdr, body)
	a := c.answerOf(m, err)
	a.body = b
	return a
}

// reservationAnswer is the answer of a reservation call: a 200 or 201 carries the
// checked reservation, or is a bad_response.
func (c *client) reservationAnswer(r *rgclient.Reservation, err error) answer {
	var m rgclient.Meta
	if r != nil {
		m = r.Meta
	}
	a := c.answerOf(m, err)
	if err == nil {
		res := fromReservation(r)
		if cerr := res.check(); cerr != nil {
			a.code, a.detail = codeBadResponse, cerr.Error()
		} else {
			a.res = &res
		}
	}
	return a
}

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

// codeBadResponse marks an answer that does not follow the API: an error without a
// problem document, or a success whose body does not decode.
const codeBadResponse revguard.Code = "bad_response"

// reservationJSON is the reservation object of docs/api.md.
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

// fromReservation is the load test's view of a reservation of the client package.
func fromReservation(r *rgclient.Reservation) reservationJSON {
	out := reservationJSON{ID: r.ID, SKU: r.SKU, CustomerID: r.CustomerID, Quantity: r.Quantity,
		Status: string(r.Status), CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
	if !r.ConfirmedAt.IsZero() {
		out.ConfirmedAt = &r.ConfirmedAt
	}
	if !r.ReleasedAt.IsZero() {
		out.ReleasedAt = &r.ReleasedAt
	}
	if r.OrderRef != "" {
		out.OrderRef = &r.OrderRef
	}
	return out
}

// check sanity-checks a reservation the server answered.
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

// skuJSON is the SKU object of docs/api.md.
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

// fromSKU is the load test's view of a SKU of the client package.
func fromSKU(s *rgclient.SKU) (skuJSON, error) {
	out := skuJSON{SKU: s.ID, Stock: s.Stock, Available: s.Available, Held: s.Held, Sold: s.Sold,
		PerCustomerLimit: s.PerCustomerLimit, HoldSeconds: s.HoldSeconds}
	if !s.OpensAt.IsZero() {
		out.OpensAt = &s.OpensAt
	}
	if out.SKU == "" {
		return out, errors.New("sku object without an id")
	}
	return out, nil
}

// putSKU creates or updates the SKU.
func (c *client) putSKU(ctx context.Context, s Scenario) (skuJSON, answer, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	r, err := c.api(c.admin).PutSKU(ctx, s.SKU, rgclient.SKUSettings{Stock: s.Stock, PerCustomerLimit: s.Limit, HoldSeconds: s.HoldSeconds})
	return c.skuAnswer(r, err, "create sku "+s.SKU)
}

// getSKU reads the exact state of a SKU.
func (c *client) getSKU(ctx context.Context, id string) (skuJSON, answer, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	r, err := c.api(c.admin).GetSKU(ctx, id)
	return c.skuAnswer(r, err, "get sku "+id)
}

func (c *client) skuAnswer(r *rgclient.SKU, err error, what string) (skuJSON, answer, error) {
	var m rgclient.Meta
	if r != nil {
		m = r.Meta
	}
	a := c.answerOf(m, err)
	if err := a.expect(http.StatusOK, http.StatusCreated); err != nil {
		return skuJSON{}, a, fmt.Errorf("%s: %w", what, err)
	}
	sku, err := fromSKU(r)
	return sku, a, err
}

// createSession issues a session for a customer.
func (c *client) createSession(ctx context.Context, customerID string) (string, answer, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	s, err := c.api(c.admin).CreateSession(ctx, rgclient.SessionParams{CustomerID: customerID, TTL: time.Hour})
	var m rgclient.Meta
	if s != nil {
		m = s.Meta
	}
	a := c.answerOf(m, err)
	if err := a.expect(http.StatusCreated); err != nil {
		return "", a, fmt.Errorf("create session for %s: %w", customerID, err)
	}
	if s.Token == "" {
		a.code = codeBadResponse
		return "", a, fmt.Errorf("create session for %s: no token", customerID)
	}
	return s.Token, a, nil
}

// reserve asks for a hold. token is the bot-check token ("" sends none); key the
// idempotency key (the client generates one when "").
func (c *client) reserve(ctx context.Context, sku, session, token, key string, qty int64) answer {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.reservationAnswer(c.api(session).Reserve(ctx, sku, rgclient.ReserveParams{Quantity: qty, TurnstileToken: token, IdempotencyKey: key}))
}

// confirm turns a hold into a sale.
func (c *client) confirm(ctx context.Context, session, id, orderRef string) answer {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.reservationAnswer(c.api(session).Confirm(ctx, id, rgclient.ConfirmParams{OrderRef: orderRef}))
}

// release gives a hold back.
func (c *client) release(ctx context.Context, session, id string) answer {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.reservationAnswer(c.api(session).Release(ctx, id))
}

// orders reads every reservation of sku from the ledger, page by page. It also returns
// the Date of the first page: the ledger is at least as recent as that.
func (c *client) orders(ctx context.Context, sku string) ([]reservationJSON, time.Time, error) {
	var all []reservationJSON
	var date time.Time
	q := rgclient.OrderQuery{SKU: sku, Limit: 1000}
	for page := 0; ; page++ {
		pctx, cancel := c.ctx(ctx)
		p, err := c.api(c.admin).ListOrders(pctx, q)
		cancel()
		var m rgclient.Meta
		if p != nil {
			m = p.Meta
		}
		a := c.answerOf(m, err)
		if err := a.expect(http.StatusOK); err != nil {
			return nil, date, fmt.Errorf("list orders page %d: %w", page, err)
		}
		if page == 0 {
			date = a.date
		}
		for i := range p.Items {
			r := fromReservation(&p.Items[i])
			if err := r.check(); err != nil {
				return nil, date, fmt.Errorf("list orders page %d: %w", page, err)
			}
			all = append(all, r)
		}
		if p.NextCursor == "" {
			return all, date, nil
		}
		if p.NextCursor == q.Cursor {
			return nil, date, fmt.Errorf("list orders page %d: next_cursor does not advance", page)
		}
		q.Cursor = p.NextCursor
	}
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
