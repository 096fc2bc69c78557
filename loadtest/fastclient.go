package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	rgclient "github.com/revenueguard/revguard/client"
)

// fastTarget sends the requests of one plain-text (http://) target through fasthttp,
// or pipelined through the load test's own connections (pipeclient.go).
//
// The load generator shares its machine, often its two cores, with the server it
// measures, so what a request costs the generator is taken from the server. net/http's
// client spends about twice what the server does on a refused reservation (a reader and
// a writer goroutine per connection, header maps, a context and a timer per request);
// fasthttp's HostClient reuses its requests, answers and buffers and reads the answer
// in the caller's goroutine. https:// targets and a caller's Runner.Client keep net/http.
type fastTarget struct {
	hc      *fasthttp.HostClient // nil when pipelined
	pipe    *pipeline            // the pipelined connections; nil: hc
	host    string               // the Host header
	prefix  string               // the base URL's path, without a trailing slash
	timeout time.Duration        // of one request, dial and a replay included; 0 for none

	lastDate atomic.Pointer[[]string] // the latest Date header, shared by the answers that have it
}

// pipelineBatchDelay is how long a pipelined connection's writer waits for more
// requests to write with the first. The drop on 200,000 buyers, three runs each, on
// fasthttp's PipelineClient (BENCHMARKS.md): sale 8.1-9.2 s with it, 9.8-12.1 s
// without, 10.8-11.5 s unpipelined; on the load test's own pipeline, 0, 200 µs and
// 2 ms did no better within the machine's noise.
const pipelineBatchDelay = time.Millisecond

// newFastTargets returns a fasthttp client per target, each with up to conns
// keep-alive connections, or false when a target is not a plain http:// base URL.
//
// With pipeline > 0, each target's requests are pipelined over that many connections
// instead (HTTP/1.1 pipelining: a connection's writer sends every request waiting for
// it in one write, and its reader reads the answers in order): the generator then
// makes a fraction of the system calls per request, and so does the server, which reads
// many requests per read. The server answers pipelined requests one after the other,
// exactly as it answers them on separate connections. A connection's writer waits up
// to pipelineBatchDelay for more requests before it writes: without it, the buyers
// woken by one read of answers send their next requests one at a time, each in a write
// of its own, and the batches stay small.
func newFastTargets(targets []string, conns, pipeline int, timeout time.Duration) ([]*fastTarget, bool) {
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
		if pipeline > 0 {
			ft := &fastTarget{host: u.Host, prefix: strings.TrimRight(u.EscapedPath(), "/"), timeout: timeout}
			ft.pipe = newPipeline(ft, func() (net.Conn, error) { return dialer.Dial("tcp", addr) }, pipeline, conns, pipelineBatchDelay)
			fts[i] = ft
			continue
		}
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
// otherwise; and a client of the client package per target on it, which does not
// retry (the sale retries itself, and records every try). The function it returns
// closes the idle connections.
func (c *client) useTransport(conns int) (closeIdle func()) {
	closeIdle = func() {}
	doers := make([]rgclient.Doer, len(c.targets))
	if c.http == nil {
		if fts, ok := newFastTargets(c.targets, conns, c.pipeline, c.timeout); ok {
			c.fast = fts
			for i, ft := range fts {
				doers[i] = ft
			}
			closeIdle = func() {
				for _, ft := range fts {
					ft.close()
				}
			}
		} else {
			tr := newTransport(conns)
			c.http = &http.Client{Transport: tr}
			closeIdle = tr.CloseIdleConnections
		}
	}
	c.apis = make([]*rgclient.Client, len(c.targets))
	for i, t := range c.targets {
		d := doers[i]
		if d == nil {
			d = c.http
		}
		api, err := rgclient.New(t, rgclient.WithToken(c.admin), rgclient.WithDoer(d), rgclient.WithRetries(0),
			rgclient.WithUserAgent("revguard-loadtest"))
		if err != nil {
			panic(fmt.Sprintf("loadtest: target %q: %v", t, err)) // Run checked the targets
		}
		c.apis[i] = api
	}
	return closeIdle
}

// retryFast lets fasthttp send a request a second time, after a transport error other
// than a timeout (a kept-alive connection closed by the server, mostly), only when it
// may safely be sent twice: a GET, a PUT, or one with an Idempotency-Key.
func retryFast(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrBodyTooLarge) {
		return false, false
	}
	return false, resendable(string(req.Header.Method()), len(req.Header.Peek("Idempotency-Key")) > 0)
}

// resendable reports whether a request may be sent a second time after a transport
// error: a GET, a PUT, or one with an Idempotency-Key.
func resendable(method string, keyed bool) bool {
	return method == http.MethodGet || method == http.MethodPut || keyed
}

// close closes the idle connections; those in use are closed when they come back. A
// pipelined target's connections close once what was sent on them is answered.
func (ft *fastTarget) close() {
	if ft.pipe != nil {
		ft.pipe.close()
		return
	}
	ft.hc.CloseIdleConnections()
}

// Do sends r through fasthttp (DoRaw) and returns its answer as net/http's: the client
// package calls DoRaw itself, so Do serves only other callers.
func (ft *fastTarget) Do(r *http.Request) (*http.Response, error) {
	req := &rgclient.RawRequest{Method: r.Method, Path: strings.TrimPrefix(r.URL.RequestURI(), ft.prefix)}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header = append(req.Header, k, v)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = b
	}
	resp, err := ft.DoRaw(r.Context(), req)
	if err != nil {
		return nil, err
	}
	return &http.Response{
		Status: strconv.Itoa(resp.StatusCode), StatusCode: resp.StatusCode,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(resp.Body)), ContentLength: int64(len(resp.Body)), Request: r,
	}, nil
}

// DoRaw sends r through fasthttp and reads its answer whole: the client package's
// transport of an http:// target. The request ends at the earlier of the target's
// timeout and ctx's deadline; a cancelled ctx stops it from being sent, but fasthttp
// cannot interrupt one in flight, which ends at its deadline.
func (ft *fastTarget) DoRaw(ctx context.Context, r *rgclient.RawRequest) (rgclient.RawResponse, error) {
	var out rgclient.RawResponse
	if err := checkRequest(r); err != nil {
		return out, err
	}
	if err := ctx.Err(); err != nil {
		return out, context.Cause(ctx)
	}
	var deadline time.Time
	if ft.timeout > 0 {
		deadline = time.Now().Add(ft.timeout)
	}
	byCtx := false // the deadline is ctx's
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline, byCtx = d, true
	}
	if ft.pipe != nil {
		resp, err := ft.pipe.do(r, deadline)
		if err != nil && isTimeout(err) && byCtx {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return resp, err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	ft.fill(req, r)
	var err error
	if deadline.IsZero() {
		err = ft.hc.Do(req, resp)
	} else {
		err = ft.hc.DoDeadline(req, resp, deadline)
	}
	if err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) && byCtx {
			return out, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return out, err
	}
	// Only the headers the client package and the load test read: the crowd's answers
	// are many, and each copied header costs the generator's shared CPU.
	h := make(http.Header, len(answerHeaders)+2)
	for _, name := range answerHeaders {
		if v := resp.Header.Peek(name); len(v) > 0 {
			h[name] = []string{string(v)}
		}
	}
	if v := resp.Header.Peek("Date"); len(v) > 0 {
		h["Date"] = ft.date(v)
	}
	if ct := resp.Header.ContentType(); len(ct) > 0 {
		h["Content-Type"] = contentType(ct)
	}
	b := resp.Body()
	out.StatusCode, out.Header = resp.StatusCode(), h
	out.Body = append(make([]byte, 0, len(b)), b...) // resp goes back to its pool
	return out, nil
}

// answerHeaders are the headers of an answer that Do passes on (and Date and
// Content-Type).
var answerHeaders = []string{"Retry-After", "Idempotent-Replayed", "X-Request-Id", "Location"}

// The usual Content-Type values of the API, shared by the answers (never modified).
var (
	problemType  = []string{"application/problem+json"}
	jsonUTF8Type = []string{"application/json; charset=utf-8"}
)

// date returns the Date header value v, shared with the previous answer when equal: it
// changes once a second, and the crowd's answers share it.
func (ft *fastTarget) date(v []byte) []string {
	if p := ft.lastDate.Load(); p != nil && (*p)[0] == string(v) {
		return *p
	}
	d := []string{string(v)}
	ft.lastDate.Store(&d)
	return d
}

// fill writes r into req, as sent to the target's host with its path under the
// target's prefix.
func (ft *fastTarget) fill(req *fasthttp.Request, r *rgclient.RawRequest) {
	req.Header.DisableNormalizing()
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(r.Method)
	req.SetRequestURI(ft.prefix + r.Path)
	req.Header.SetHost(ft.host)
	for i := 0; i+1 < len(r.Header); i += 2 {
		req.Header.Add(r.Header[i], r.Header[i+1])
	}
	if r.Body != nil {
		req.SetBodyRaw(r.Body)
	}
}

// checkRequest refuses a request that would not be one request: a control character
// in the path or in a header value (a token the server gave, say) would split it.
func checkRequest(r *rgclient.RawRequest) error {
	for _, s := range []string{r.Method, r.Path} {
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] == 0x7f {
				return fmt.Errorf("request %q %q: a space or control character in the request line", r.Method, r.Path)
			}
		}
	}
	for _, s := range r.Header {
		for i := 0; i < len(s); i++ {
			if s[i] < ' ' || s[i] == 0x7f {
				return fmt.Errorf("request %s %s: a control character in a header", r.Method, r.Path)
			}
		}
	}
	return nil
}
