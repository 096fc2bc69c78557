// Package client is a Go client of Revenue Guard's v1 HTTP API: a typed call for every
// endpoint (but the two streams a browser follows, the dashboard's and a waiting-room
// place's, which Do reaches; Place polls a place), the event stream as an iterator that
// reconnects (Events), errors as *Error carrying the API's problem code, and safe
// retries.
//
// One Client holds the base URL, a bearer token and the HTTP transport; WithToken
// derives a Client for another token that shares the rest, so a shop's backend keeps
// one admin Client and derives one per customer session:
//
//	admin, err := client.New("http://127.0.0.1:8080", client.WithToken(adminToken))
//	sess, err := admin.CreateSession(ctx, client.SessionParams{CustomerID: "c-42"})
//	buyer := admin.WithToken(sess.Token)
//	key := client.NewIdempotencyKey() // kept for a retry of this purchase
//	res, err := buyer.Reserve(ctx, "sneaker-42", client.ReserveParams{TurnstileToken: tok, IdempotencyKey: key})
//	switch client.ErrorCode(err) {
//	case "":                       // res is held until res.ExpiresAt
//	case revguard.CodeSoldOut:     // tell the customer
//	}
//
// Retries: a call that is safe to repeat is sent again after an answer 503 (a store
// or the bot check's verifier did not answer), after its Retry-After, and after a lost
// connection, after a short pause. Safe to repeat are reads, PUT, confirm and release
// (idempotent in the API), and pausing or resuming a webhook; reserve, which always
// carries an Idempotency-Key (generated when the caller gives none), so that a repeated
// reservation is answered with the first one's result instead of a second hold;
// joining a waiting room (a second join returns the place); and logout and deleting a
// waiting room or a webhook, whose retry answered unauthenticated, waiting_room_not_found
// or webhook_not_found means an earlier attempt did it. Creating a session or a
// webhook is never sent twice.
//
// A Turnstile token is single-use, and an attempt that reached the server may have
// spent it: when a retry of a reserve or a join is refused with bot_check_failed, the
// call returns the attempt before it (the 503, or the lost connection), and the
// caller asks the customer for a new token and retries with the same Idempotency-Key.
// Give Reserve your own key (NewIdempotencyKey) to be able to do that. Every call
// takes a context, which bounds the whole call, retries included.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/revenueguard/revguard"
)

// Doer sends one HTTP request and returns its response, as *http.Client does. A
// load generator may plug in a leaner transport.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// RawDoer is a transport that a Doer may also implement to take the API's requests as
// plain parts, without net/http's Request and Response: a load generator that shares
// its machine with the server it measures saves their cost per request. The client
// then calls DoRaw instead of Do.
type RawDoer interface {
	// DoRaw sends req to the server of the Client's base URL and returns the whole
	// answer. ctx bounds the request.
	DoRaw(ctx context.Context, req *RawRequest) (RawResponse, error)
}

// RawRequest is one request of the API, in parts.
type RawRequest struct {
	Method string
	Path   string   // below the base URL, escaped, with the query
	Header []string // name, value pairs; names in canonical form
	Body   []byte   // nil: none
}

// RawResponse is one answer, read whole.
type RawResponse struct {
	StatusCode int
	Header     http.Header // at least Content-Type, Date, Retry-After, Idempotent-Replayed, X-Request-Id, Location
	Body       []byte
}

// Defaults of New.
const (
	DefaultRetries      = 2
	DefaultMaxRetryWait = 10 * time.Second
	maxAnswerBytes      = 8 << 20 // an orders page of 1,000 reservations is about 300 KB
)

// Client calls the API of one server. It is safe for concurrent use. Its settings
// are fixed by New and WithToken.
type Client struct {
	base    string   // scheme://host[/prefix], without a trailing slash
	token   string   // bearer token; "" sends none
	auth    []string // the Authorization header of token, shared by the requests
	doer    Doer
	retries int
	maxWait time.Duration
	agent   []string     // the User-Agent header; nil sends Go's
	memo    *problemMemo // shared by the Clients WithToken derives
}

// Option configures a Client in New.
type Option func(*Client)

// WithToken sets the bearer token: the admin token, or a customer's session token.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithDoer sets the HTTP transport; the default is an http.Client with a 30-second
// timeout.
func WithDoer(d Doer) Option { return func(c *Client) { c.doer = d } }

// WithRetries sets how many times a call may be retried after its first attempt
// (DefaultRetries); 0 turns retrying off.
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(n, 0) } }

// WithMaxRetryWait bounds the wait before a retry (DefaultMaxRetryWait): an answer
// whose Retry-After is longer is returned instead of waited for.
func WithMaxRetryWait(d time.Duration) Option { return func(c *Client) { c.maxWait = d } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.agent = []string{ua} } }

// New returns a Client of the server at baseURL (http:// or https://, with an optional
// path prefix).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("revguard client: base URL %q: want http(s)://host[:port][/prefix]", baseURL)
	}
	c := &Client{
		base:    strings.TrimRight(u.String(), "/"),
		doer:    &http.Client{Timeout: 30 * time.Second},
		retries: DefaultRetries,
		maxWait: DefaultMaxRetryWait,
		agent:   []string{"revguard-go-client"},
		memo:    &problemMemo{},
	}
	for _, o := range opts {
		o(c)
	}
	c.setToken(c.token)
	return c, nil
}

// WithToken returns a Client like c with another bearer token.
func (c *Client) WithToken(token string) *Client {
	d := *c
	d.setToken(token)
	return &d
}

func (c *Client) setToken(token string) {
	c.token, c.auth = token, nil
	if token != "" {
		c.auth = []string{"Bearer " + token}
	}
}

// BaseURL returns the server's base URL, without a trailing slash.
func (c *Client) BaseURL() string { return c.base }

// NewIdempotencyKey returns a fresh random Idempotency-Key (128 bits). Give one to
// ReserveParams to be able to retry the same purchase attempt later yourself.
func NewIdempotencyKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "rg-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Meta is the HTTP side of an answer, for what its typed value does not say.
type Meta struct {
	StatusCode int
	Header     http.Header
}

// RequestID returns the answer's X-Request-Id, which the server's log also has.
func (m Meta) RequestID() string { return m.Header.Get("X-Request-Id") }

// Replayed reports whether a reservation answer replays an earlier request with the
// same Idempotency-Key (Idempotent-Replayed: true).
func (m Meta) Replayed() bool { return m.Header.Get("Idempotent-Replayed") == "true" }

// Date returns the answer's Date header, zero when absent or malformed.
func (m Meta) Date() time.Time {
	t, _ := http.ParseTime(m.Header.Get("Date"))
	return t
}

// Do sends one request of the API as it is: method, path (with its query), the
// Client's token, header and body (JSON; nil sends none). It returns the answer's Meta
// and body, with an *Error for an error answer. It retries a 503 and a lost
// connection when the request may be sent twice by its method or header alone: GET,
// PUT, or one with an Idempotency-Key (which the API honours on reserve); one with a
// CF-Turnstile-Response is handled as the package comment says. The typed calls know
// more (confirm, release, logout and deleting a room are retried too). They are built
// on it; use it for what they do not cover.
func (c *Client) Do(ctx context.Context, method, path string, header http.Header, body []byte) (Meta, []byte, error) {
	cl := call{method: method, path: path, raw: body,
		safe:        method == http.MethodGet || method == http.MethodPut || header.Get("Idempotency-Key") != "",
		spendsToken: header.Get("Cf-Turnstile-Response") != ""}
	for k, vs := range header {
		for _, v := range vs {
			cl.header = append(cl.header, http.CanonicalHeaderKey(k), v)
		}
	}
	return c.do(ctx, cl, nil)
}

// call is one API request.
type call struct {
	method, path string
	header       []string // name, value pairs, names in canonical form
	body         any      // encoded as JSON; nil sends raw
	raw          []byte   // the body as it is, when body is nil; nil sends none
	safe         bool     // may be sent again after a lost connection or a 503
	// spendsToken: the request carries a single-use bot-check token, which an
	// attempt that reached the server may have spent; a retry refused with
	// bot_check_failed is then reported as the attempt before it (a 503 or a lost
	// connection), after which the caller retries with a new token and the same key.
	spendsToken bool
	// doneOnRetry: a problem code that, answering a retry, means an earlier attempt
	// did what was asked (a logout's unauthenticated: the token is gone); "": none.
	// A code, not a status: a proxy's 404 page says nothing of the kind.
	doneOnRetry revguard.Code
}

// do sends cl with the retries of the package comment and decodes a successful answer
// into out (nil: none expected). It returns the answer's Meta and body, and an *Error
// for an error answer, a *MalformedError for a success it cannot decode, or a transport
// error.
func (c *Client) do(ctx context.Context, cl call, out any) (Meta, []byte, error) {
	body := cl.raw
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return Meta{}, nil, fmt.Errorf("revguard client: %s %s: encode the body: %w", cl.method, cl.path, err)
		}
	}
	var (
		prevM   Meta
		prevB   []byte
		prevErr error // the attempt before, decoded
	)
	for attempt := 0; ; attempt++ {
		m, b, err := c.send(ctx, cl, body)
		if attempt > 0 && err == nil {
			switch {
			case cl.doneOnRetry != "" && m.StatusCode >= 400 && ErrorCode(c.memo.errorOf(m, b)) == cl.doneOnRetry:
				return m, b, nil
			case cl.spendsToken && m.StatusCode == http.StatusForbidden && ErrorCode(c.memo.errorOf(m, b)) == revguard.CodeBotCheckFailed:
				return prevM, prevB, prevErr
			}
		}
		var wait time.Duration
		switch {
		case !cl.safe:
			if err != nil {
				return m, b, err
			}
			return m, b, c.decode(cl, m, b, out)
		case err != nil:
			if !connectionLost(err) || ctx.Err() != nil {
				return m, b, err
			}
			wait = time.Duration(100<<min(attempt, 6)) * time.Millisecond
		case m.StatusCode == http.StatusServiceUnavailable:
			wait = retryAfter(m.Header)
			if wait < 0 {
				wait = time.Duration(250<<min(attempt, 6)) * time.Millisecond
			}
			err = c.decode(cl, m, b, out)
		default:
			return m, b, c.decode(cl, m, b, out)
		}
		if attempt >= c.retries || wait > c.maxWait || !sleep(ctx, wait) {
			return m, b, err
		}
		prevM, prevB, prevErr = m, b, err
	}
}

// newRequest returns the request of method on path with body (nil: none), with the
// headers every request carries: the token, the user agent and, with a body, its
// Content-Type; its header map has room for extra more.
func (c *Client) newRequest(ctx context.Context, method, path string, body []byte, extra int) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("revguard client: %s %s: %w", method, path, err)
	}
	h := make(http.Header, 4+extra) // sized once: the request's few headers
	req.Header = h
	if body != nil {
		h["Content-Type"] = jsonType
	}
	if c.auth != nil {
		h["Authorization"] = c.auth // shared: net/http does not modify a request's header
	}
	if c.agent != nil {
		h["User-Agent"] = c.agent
	}
	return req, nil
}

// send makes one attempt and reads the whole answer.
func (c *Client) send(ctx context.Context, cl call, body []byte) (Meta, []byte, error) {
	if rd, ok := c.doer.(RawDoer); ok {
		return c.sendRaw(ctx, rd, cl, body)
	}
	req, err := c.newRequest(ctx, cl.method, cl.path, body, len(cl.header)/2)
	if err != nil {
		return Meta{}, nil, err
	}
	for i := 0; i+1 < len(cl.header); i += 2 {
		req.Header[cl.header[i]] = []string{cl.header[i+1]}
	}
	resp, err := c.doer.Do(req)
	if err != nil {
		return Meta{}, nil, fmt.Errorf("revguard client: %s %s: %w", cl.method, cl.path, err)
	}
	defer resp.Body.Close()
	m := Meta{StatusCode: resp.StatusCode, Header: resp.Header}
	b, err := readAnswer(resp)
	if err != nil {
		return m, nil, fmt.Errorf("revguard client: %s %s: read the answer: %w", cl.method, cl.path, err)
	}
	if len(b) > maxAnswerBytes {
		return m, nil, fmt.Errorf("revguard client: %s %s: answer larger than %d bytes", cl.method, cl.path, maxAnswerBytes)
	}
	return m, b, nil
}

var jsonType = []string{"application/json"}

// sendRaw is send through a RawDoer.
func (c *Client) sendRaw(ctx context.Context, rd RawDoer, cl call, body []byte) (Meta, []byte, error) {
	h := make([]string, 0, 6+len(cl.header))
	if body != nil {
		h = append(h, "Content-Type", jsonType[0])
	}
	if c.auth != nil {
		h = append(h, "Authorization", c.auth[0])
	}
	if c.agent != nil {
		h = append(h, "User-Agent", c.agent[0])
	}
	h = append(h, cl.header...)
	resp, err := rd.DoRaw(ctx, &RawRequest{Method: cl.method, Path: cl.path, Header: h, Body: body})
	if err != nil {
		return Meta{}, nil, fmt.Errorf("revguard client: %s %s: %w", cl.method, cl.path, err)
	}
	if len(resp.Body) > maxAnswerBytes {
		return Meta{}, nil, fmt.Errorf("revguard client: %s %s: answer larger than %d bytes", cl.method, cl.path, maxAnswerBytes)
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	return Meta{StatusCode: resp.StatusCode, Header: resp.Header}, resp.Body, nil
}

// readAnswer reads the whole body of resp, in one allocation when its length is known.
func readAnswer(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= maxAnswerBytes {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
}

// decode turns an answer into out or an *Error.
func (c *Client) decode(cl call, m Meta, b []byte, out any) error {
	if m.StatusCode >= 400 {
		return c.memo.errorOf(m, b)
	}
	if m.StatusCode < 200 || m.StatusCode > 299 {
		return &MalformedError{Meta: m, Err: fmt.Errorf("%s %s: unexpected status %d", cl.method, cl.path, m.StatusCode)}
	}
	if out == nil {
		return nil
	}
	switch o := out.(type) {
	case *[]byte:
		*o = b
		return nil
	case *string:
		*o = string(b)
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &MalformedError{Meta: m, Err: fmt.Errorf("%s %s: decode the answer: %w", cl.method, cl.path, err)}
	}
	return nil
}

// MalformedError is a successful answer that does not follow the API: a body that
// does not decode, or an unexpected status. The request may have had its effect.
type MalformedError struct {
	Meta Meta
	Err  error
}

func (e *MalformedError) Error() string { return "revguard client: " + e.Err.Error() }
func (e *MalformedError) Unwrap() error { return e.Err }

// retryAfter returns the wait a Retry-After header asks for (seconds or an HTTP
// date), or -1 when there is none.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return -1
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return -1
}

// connectionLost reports whether err means the connection failed or was lost before
// the whole answer arrived (so the request may or may not have been processed), as
// opposed to a timeout, a cancelled context or an error of the client itself.
func connectionLost(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE)
}

// sleep waits d, and reports false when ctx ended first or would end before d.
func sleep(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
