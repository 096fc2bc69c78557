package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
)

// response is one answer of the API, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// problem is an RFC 9457 problem document of the API.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

// req describes one request for client.do.
type req struct {
	Method  string
	Path    string
	Token   string // Bearer token; "" for none
	Body    string // sent with Content-Type: application/json unless Header sets one
	Header  map[string]string
	NoCType bool        // send the body without a Content-Type
	Added   [][2]string // fields added after Header's, each a name and a value (repeats)
}

// client sends requests to a test server over a real connection.
type client struct {
	tb   testing.TB
	base string
	hc   *http.Client
}

func (c *client) do(r req) *response {
	c.tb.Helper()
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	hr, err := http.NewRequest(r.Method, c.base+r.Path, body)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	if r.Body != "" && !r.NoCType {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.Token)
	}
	for k, v := range r.Header {
		hr.Header.Set(k, v)
	}
	for _, kv := range r.Added {
		hr.Header.Add(kv[0], kv[1])
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatalf("%s %s: read body: %v", r.Method, r.Path, err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// problem decodes r as a problem document and checks its media type and members.
func (r *response) problem(tb testing.TB) problem {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("status %d: Content-Type %q, want application/problem+json; body %s", r.Status, ct, r.Body)
	}
	var p problem // extension members (RFC 9457 3.2) are allowed
	if err := json.Unmarshal(r.Body, &p); err != nil {
		tb.Fatalf("problem document %s: %v", r.Body, err)
	}
	if p.Status != r.Status || p.Code == "" || p.Title == "" || p.Detail == "" || p.Type != "urn:revguard:problem:"+p.Code {
		tb.Fatalf("malformed problem document for status %d: %s", r.Status, r.Body)
	}
	return p
}

// wantProblem checks that r is a problem with status and code.
func (r *response) wantProblem(tb testing.TB, status int, code revguard.Code) problem {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status %d, want %d (%s); body %s", r.Status, status, code, r.Body)
	}
	p := r.problem(tb)
	if p.Code != string(code) {
		tb.Fatalf("code %q, want %q; body %s", p.Code, code, r.Body)
	}
	if r.Header.Get("X-Request-Id") == "" {
		tb.Fatalf("no X-Request-Id on %d %s", r.Status, code)
	}
	return p
}

// json decodes r's body into v after checking the status and the JSON media type.
func (r *response) json(tb testing.TB, status int, v any) {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		tb.Fatalf("Content-Type %q, want application/json; charset=utf-8", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

// reservation is the reservation object of docs/api.md, as a client sees it.
type reservation struct {
	ID          string  `json:"id"`
	SKU         string  `json:"sku"`
	CustomerID  string  `json:"customer_id"`
	Quantity    int64   `json:"quantity"`
	Status      string  `json:"status"`
	CreatedAt   string  `json:"created_at"`
	ExpiresAt   string  `json:"expires_at"`
	ConfirmedAt *string `json:"confirmed_at"`
	ReleasedAt  *string `json:"released_at"`
	OrderRef    *string `json:"order_ref"`
}

// sku is the SKU object of docs/api.md.
type sku struct {
	SKU              string  `json:"sku"`
	Stock            int64   `json:"stock"`
	Available        int64   `json:"available"`
	Held             int64   `json:"held"`
	Sold             int64   `json:"sold"`
	PerCustomerLimit int64   `json:"per_customer_limit"`
	HoldSeconds      int64   `json:"hold_seconds"`
	OpensAt          *string `json:"opens_at"`
}

// orderPage is the answer of GET /v1/orders and /v1/me/reservations.
type orderPage struct {
	Items      []reservation `json:"items"`
	NextCursor *string       `json:"next_cursor"`
}
