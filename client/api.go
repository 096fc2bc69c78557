package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/revenueguard/revguard"
)

// SKUSettings is the body of PutSKU. Zero PerCustomerLimit and HoldSeconds take the
// server's defaults (1 and 600); a zero OpensAt means open at once.
type SKUSettings struct {
	Stock            int64     `json:"stock"`
	PerCustomerLimit int64     `json:"per_customer_limit,omitzero"`
	HoldSeconds      int64     `json:"hold_seconds,omitzero"`
	OpensAt          time.Time `json:"opens_at,omitzero"`
}

// SKU is a SKU's exact state: Available + Held + Sold == Stock.
type SKU struct {
	ID               string    `json:"sku"`
	Stock            int64     `json:"stock"`
	Available        int64     `json:"available"`
	Held             int64     `json:"held"`
	Sold             int64     `json:"sold"`
	PerCustomerLimit int64     `json:"per_customer_limit"`
	HoldSeconds      int64     `json:"hold_seconds"`
	OpensAt          time.Time `json:"opens_at"` // zero: open
	// Meta.StatusCode is 201 when PutSKU's answered attempt created the SKU (200 after
	// a retry whose lost first attempt did).
	Meta Meta `json:"-"`
}

// Availability is a SKU's public view, up to a second stale.
type Availability struct {
	SKU       string    `json:"sku"`
	Available int64     `json:"available"`
	SoldOut   bool      `json:"sold_out"`
	OpensAt   time.Time `json:"opens_at"` // zero: open
	Meta      Meta      `json:"-"`
}

// SessionParams is the body of CreateSession; a zero TTL takes the server's default
// (an hour).
type SessionParams struct {
	CustomerID string
	TTL        time.Duration
}

// Session is a customer session: give Token to the customer's browser or app.
type Session struct {
	Token      string    `json:"token"`
	CustomerID string    `json:"customer_id"`
	ExpiresAt  time.Time `json:"expires_at"`
	Meta       Meta      `json:"-"`
}

// ReserveParams describes a reservation. A zero Quantity is 1. TurnstileToken is the
// token of the Turnstile widget (required while the server's bot check is on);
// IdempotencyKey identifies the purchase attempt (NewIdempotencyKey when empty).
type ReserveParams struct {
	Quantity       int64  // 0: the API's default, 1
	TurnstileToken string // the widget's single-use token, while the server's bot check is on
	// IdempotencyKey: requests with one key make at most one hold, and a retry
	// returns its result. Empty: one is generated for this call (its own retries),
	// which a later call cannot reuse; give one (NewIdempotencyKey) to retry a
	// purchase after an error, with a new TurnstileToken.
	IdempotencyKey string
}

// ConfirmParams is the optional body of Confirm.
type ConfirmParams struct {
	OrderRef string `json:"order_ref,omitzero"` // the shop's order reference, kept in the ledger
	Revive   bool   `json:"revive,omitzero"`    // confirm an expired hold if its units can be taken again
}

// Reservation is a hold and what became of it.
type Reservation struct {
	ID          string          `json:"id"`
	SKU         string          `json:"sku"`
	CustomerID  string          `json:"customer_id"`
	Quantity    int64           `json:"quantity"`
	Status      revguard.Status `json:"status"`
	CreatedAt   time.Time       `json:"created_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
	ConfirmedAt time.Time       `json:"confirmed_at"` // zero unless confirmed
	ReleasedAt  time.Time       `json:"released_at"`  // zero unless released
	OrderRef    string          `json:"order_ref"`
	Meta        Meta            `json:"-"` // set on the value a call returns, not on listed items
}

// OrderQuery filters and pages a listing. Zero fields are not sent; CustomerID is
// only for ListOrders.
type OrderQuery struct {
	SKU        string
	CustomerID string
	Status     revguard.Status
	Limit      int
	Cursor     string
}

// OrderPage is one page of a listing; NextCursor is "" on the last page.
type OrderPage struct {
	Items      []Reservation `json:"items"`
	NextCursor string        `json:"next_cursor"`
	Meta       Meta          `json:"-"`
}

// Readiness is the answer of /readyz.
type Readiness struct {
	Status   string `json:"status"`
	BotCheck string `json:"bot_check"` // "on" or "off"
	Warning  string `json:"warning"`
}

// PutSKU creates a SKU or replaces its settings (admin).
func (c *Client) PutSKU(ctx context.Context, sku string, s SKUSettings) (*SKU, error) {
	var out SKU
	m, _, err := c.do(ctx, call{method: http.MethodPut, path: "/v1/skus/" + url.PathEscape(sku), body: s, safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// GetSKU returns a SKU's exact state (admin).
func (c *Client) GetSKU(ctx context.Context, sku string) (*SKU, error) {
	var out SKU
	m, _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/skus/" + url.PathEscape(sku), safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// Availability returns a SKU's public availability (no token needed).
func (c *Client) Availability(ctx context.Context, sku string) (*Availability, error) {
	var out Availability
	m, _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/skus/" + url.PathEscape(sku) + "/availability", safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// CreateSession issues a session for a customer the shop has authenticated (admin).
func (c *Client) CreateSession(ctx context.Context, p SessionParams) (*Session, error) {
	body := struct {
		CustomerID string `json:"customer_id"`
		TTLSeconds int64  `json:"ttl_seconds,omitzero"`
	}{p.CustomerID, int64(p.TTL / time.Second)}
	var out Session
	m, _, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/sessions", body: body}, &out)
	out.Meta = m
	return result(&out, err)
}

// Logout revokes the Client's session token (customer). A retry answered 401 means
// an earlier attempt revoked it: Logout then returns nil.
func (c *Client) Logout(ctx context.Context) error {
	_, _, err := c.do(ctx, call{method: http.MethodDelete, path: "/v1/sessions/current", safe: true, doneOnRetry: revguard.CodeUnauthenticated}, nil)
	return err
}

// Reserve holds units of a SKU for the Client's customer. The hold is durable when it
// returns. The answer to a repeated Idempotency-Key is the first one's, with
// Meta.Replayed set.
func (c *Client) Reserve(ctx context.Context, sku string, p ReserveParams) (*Reservation, error) {
	key := p.IdempotencyKey
	if key == "" {
		key = NewIdempotencyKey()
	}
	hdr := []string{"Idempotency-Key", key}
	if p.TurnstileToken != "" {
		hdr = append(hdr, "Cf-Turnstile-Response", p.TurnstileToken)
	}
	var body []byte // written by hand: the hot path of a crowd
	if p.Quantity != 0 {
		body = append(strconv.AppendInt(append(make([]byte, 0, 24), `{"quantity":`...), p.Quantity, 10), '}')
	}
	var out Reservation
	m, _, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/skus/" + url.PathEscape(sku) + "/reservations", header: hdr, raw: body,
		safe: true, spendsToken: p.TurnstileToken != ""}, &out)
	out.Meta = m
	return result(&out, err)
}

// GetReservation returns a reservation (its owner, or the admin).
func (c *Client) GetReservation(ctx context.Context, id string) (*Reservation, error) {
	var out Reservation
	m, _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/reservations/" + url.PathEscape(id), safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// Confirm turns the Client's customer's hold into a sale.
func (c *Client) Confirm(ctx context.Context, id string, p ConfirmParams) (*Reservation, error) {
	var body any
	if p != (ConfirmParams{}) {
		body = p
	}
	var out Reservation
	m, _, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/reservations/" + url.PathEscape(id) + "/confirm", body: body, safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// Release gives a hold's units back (its owner, or the admin).
func (c *Client) Release(ctx context.Context, id string) (*Reservation, error) {
	var out Reservation
	m, _, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/reservations/" + url.PathEscape(id) + "/release", safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// ListOrders returns one page of the ledger, oldest first (admin).
func (c *Client) ListOrders(ctx context.Context, q OrderQuery) (*OrderPage, error) {
	return c.page(ctx, "/v1/orders", q)
}

// MyReservations returns one page of the Client's customer's reservations, newest
// first (customer).
func (c *Client) MyReservations(ctx context.Context, q OrderQuery) (*OrderPage, error) {
	q.CustomerID = ""
	return c.page(ctx, "/v1/me/reservations", q)
}

// AllOrders iterates over the whole ledger listing of q, page after page; it stops
// at the first error, which it yields.
func (c *Client) AllOrders(ctx context.Context, q OrderQuery) iter.Seq2[Reservation, error] {
	return func(yield func(Reservation, error) bool) {
		for {
			p, err := c.ListOrders(ctx, q)
			if err != nil {
				yield(Reservation{}, err)
				return
			}
			for _, r := range p.Items {
				if !yield(r, nil) {
					return
				}
			}
			if p.NextCursor == "" {
				return
			}
			q.Cursor = p.NextCursor
		}
	}
}

func (c *Client) page(ctx context.Context, path string, q OrderQuery) (*OrderPage, error) {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("sku", q.SKU)
	set("customer_id", q.CustomerID)
	set("status", string(q.Status))
	set("cursor", q.Cursor)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out OrderPage
	m, _, err := c.do(ctx, call{method: http.MethodGet, path: path, safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// Healthz reports whether the server process answers.
func (c *Client) Healthz(ctx context.Context) error {
	_, _, err := c.do(ctx, call{method: http.MethodGet, path: "/healthz", safe: true}, nil)
	return err
}

// Ready returns the server's readiness; an *Error with code unavailable (after the
// retries) means not ready.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	var out Readiness
	_, _, err := c.do(ctx, call{method: http.MethodGet, path: "/readyz", safe: true}, &out)
	return result(&out, err)
}

// Metrics returns the server's Prometheus metrics, in the text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	var out string
	_, _, err := c.do(ctx, call{method: http.MethodGet, path: "/metrics", safe: true}, &out)
	return out, err
}

// OpenAPI returns the OpenAPI 3.1 document the server serves.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	var out []byte
	_, _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/openapi.json", safe: true}, &out)
	return out, err
}

// result returns v, or nil and err.
func result[T any](v *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}
