package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// fastTarget sends the requests of one plain-text (http://) target through fasthttp.
//
// The load generator shares its machine, often its two cores, with the server it
// measures, so what a request costs the generator is taken from the server. net/http's
// client spends about twice what the server does on a refused reservation (a reader and
// a writer goroutine per connection, header maps, a context and a timer per request);
// fasthttp's HostClient reuses its requests, answers and buffers and reads the answer
// in the caller's goroutine. https:// targets and a caller's Runner.Client keep net/http.
type fastTarget struct {
	hc      *fasthttp.HostClient
	host    string        // the Host header
	prefix  string        // the base URL's path, without a trailing slash
	timeout time.Duration // of one request, dial and a replay included; 0 for none
}

// fastRequest is a request of the v1 API: a JSON body, and the few headers it uses.
type fastRequest struct {
	method, path   string
	auth           string // bearer token; "" sends none
	turnstile      string // CF-Turnstile-Response; "" sends none
	idempotencyKey string // Idempotency-Key; "" sends none
	body           []byte // JSON; nil sends none
}

// newFastTargets returns a fasthttp client per target, each with up to conns
// keep-alive connections, or false when a target is not a plain http:// base URL.
func newFastTargets(targets []string, conns int, timeout time.Duration) ([]*fastTarget, bool) {
	fts := make([]*fastTarget, len(targets))
	for i, t := range targets {
		u, err := url.Parse(t)
		if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, false
		}
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		fts[i] = &fastTarget{
			hc: &fasthttp.HostClient{
				Addr:                      addr,
				Dial:                      func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) },
				MaxConns:                  conns,
				MaxIdleConnDuration:       90 * time.Second,
				MaxResponseBodySize:       maxAnswer,
				MaxIdemponentCallAttempts: 2,
				RetryIfErr:                retryFast,
				NoDefaultUserAgentHeader:  true,
				DisablePathNormalizing:    true,
			},
			host: u.Host, prefix: strings.TrimRight(u.EscapedPath(), "/"), timeout: timeout,
		}
	}
	return fts, true
}

// useTransport gives c a transport of conns keep-alive connections per target, unless
// the caller gave a client (c.http): fasthttp when every target is http://, net/http
// otherwise. The function it returns closes the idle connections.
func (c *client) useTransport(conns int) (closeIdle func()) {
	if c.http != nil {
		return func() {}
	}
	if fts, ok := newFastTargets(c.targets, conns, c.timeout); ok {
		c.fast = fts
		return func() {
			for _, ft := range fts {
				ft.close()
			}
		}
	}
	tr := newTransport(conns)
	c.http = &http.Client{Transport: tr}
	return tr.CloseIdleConnections
}

// retryFast lets fasthttp send a request a second time, after a transport error other
// than a timeout (a kept-alive connection closed by the server, mostly), only when it
// may safely be sent twice: a GET, a PUT, or one with an Idempotency-Key.
func retryFast(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrBodyTooLarge) {
		return false, false
	}
	return false, req.Header.IsGet() || req.Header.IsPut() || len(req.Header.Peek("Idempotency-Key")) > 0
}

// close closes the idle connections; those in use are closed when they come back.
func (ft *fastTarget) close() { ft.hc.CloseIdleConnections() }

// roundTrip sends r and reads its answer into a: status, body, and the headers the load
// test reads (Date through dates). An error means the outcome is unknown. The request
// ends at the earlier of its timeout and ctx's deadline; a cancelled ctx stops it from
// being sent, but fasthttp cannot interrupt one in flight, which ends at its deadline.
func (ft *fastTarget) roundTrip(ctx context.Context, r *fastRequest, a *answer, dates *dateCache) error {
	if err := r.check(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	var deadline time.Time
	if ft.timeout > 0 {
		deadline = time.Now().Add(ft.timeout)
	}
	byCtx := false // the deadline is ctx's
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline, byCtx = d, true
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	r.fill(req, ft.host, ft.prefix)
	var err error
	if deadline.IsZero() {
		err = ft.hc.Do(req, resp)
	} else {
		err = ft.hc.DoDeadline(req, resp, deadline)
	}
	if err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) && byCtx {
			return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return err
	}
	a.status = resp.StatusCode()
	b := resp.Body()
	a.body = append(make([]byte, 0, len(b)), b...) // resp goes back to its pool
	if v := resp.Header.Peek("Date"); len(v) > 0 {
		a.date, _ = dates.parseBytes(v)
	}
	if v := resp.Header.Peek("Retry-After"); len(v) > 0 {
		if s, err := strconv.Atoi(string(v)); err == nil && s >= 0 {
			a.retryAfter = time.Duration(s) * time.Second
		}
	}
	a.replayed = string(resp.Header.Peek("Idempotent-Replayed")) == "true"
	return nil
}

// fill writes r into req, as sent to host with its path under prefix.
func (r *fastRequest) fill(req *fasthttp.Request, host, prefix string) {
	req.Header.DisableNormalizing()
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(r.method)
	req.SetRequestURI(prefix + r.path)
	req.Header.SetHost(host)
	req.Header.SetUserAgent("revguard-loadtest")
	if r.auth != "" {
		req.Header.Set("Authorization", "Bearer "+r.auth)
	}
	if r.turnstile != "" {
		req.Header.Set("Cf-Turnstile-Response", r.turnstile)
	}
	if r.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", r.idempotencyKey)
	}
	if r.body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(r.body)
	}
}

// check refuses a request that would not be one request: a control character in the
// path or in a header value (a token the server gave, say) would split it.
func (r *fastRequest) check() error {
	for _, s := range []string{r.method, r.path} {
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] == 0x7f {
				return fmt.Errorf("request %q %q: a space or control character in the request line", r.method, r.path)
			}
		}
	}
	for _, s := range []string{r.auth, r.turnstile, r.idempotencyKey} {
		for i := 0; i < len(s); i++ {
			if s[i] < ' ' || s[i] == 0x7f {
				return fmt.Errorf("request %s %s: a control character in a header value", r.method, r.path)
			}
		}
	}
	return nil
}
