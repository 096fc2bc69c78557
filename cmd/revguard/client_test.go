package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard/client"
	"github.com/revenueguard/revguard/httpapi/openapitest"
)

// testAdminToken is the admin token the tests configure.
const testAdminToken = "test-admin-token-0123456789abcdef"

// listeningPrefix starts the line in which serve prints its address.
const listeningPrefix = "revguard: listening on "

// runningServer is `revguard serve` running in-process through run, on 127.0.0.1:0.
type runningServer struct {
	URL     string
	DataDir string
	Log     *logBuffer // serve's stderr

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// MustRunServer starts run(ctx, ["serve", ...]) with the data dir dataDir, the test
// admin token, no rate limits and no bot check, then args (later flags win), and env
// as the environment. It waits until the server prints its address. The server is
// stopped at cleanup.
func MustRunServer(tb testing.TB, dataDir string, env map[string]string, args ...string) *runningServer {
	tb.Helper()
	full := append([]string{"serve",
		"--addr", "127.0.0.1:0", "--data-dir", dataDir, "--admin-token", testAdminToken,
		"--rate-limit-customer", "off", "--rate-limit-ip", "off", "--log-level", "warn",
	}, args...)
	s, err := startServer(dataDir, env, full)
	if err != nil {
		tb.Fatalf("start server: %v\nlog:\n%s", err, s.Log)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stop server: %v\nlog:\n%s", err, s.Log)
		}
	})
	return s
}

// startServer runs args through run in a goroutine and waits for the address line, or
// for run to fail.
func startServer(dataDir string, env map[string]string, args []string) (*runningServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningServer{DataDir: dataDir, Log: newLogBuffer(), cancel: cancel, done: make(chan error, 1)}
	// run serves until cancel; its result is collected by Stop.
	go func() { s.done <- run(ctx, args, envMap(env), io.Discard, s.Log) }()
	select {
	case s.URL = <-s.Log.url:
		return s, nil
	case err := <-s.done:
		cancel()
		s.once.Do(func() { s.err = err })
		if err == nil {
			err = errors.New("run returned nil before listening")
		}
		return s, err
	case <-time.After(60 * time.Second):
		cancel()
		return s, errors.New("no address line within 60 s")
	}
}

// Stop shuts the server down as SIGTERM does and returns run's result.
func (s *runningServer) Stop() error {
	s.once.Do(func() {
		s.cancel()
		s.err = <-s.done
	})
	return s.err
}

// logBuffer collects serve's stderr and reports the URL of the first listening line.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen bool
	url  chan string
}

func newLogBuffer() *logBuffer { return &logBuffer{url: make(chan string, 1)} }

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if !b.seen {
		if u, ok := findListening(b.buf.String()); ok {
			b.seen = true
			b.url <- u
		}
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// findListening returns the URL of the first complete listening line in log.
func findListening(log string) (string, bool) {
	i := strings.Index(log, listeningPrefix)
	if i < 0 {
		return "", false
	}
	rest := log[i+len(listeningPrefix):]
	j := strings.IndexByte(rest, '\n')
	if j < 0 {
		return "", false
	}
	return rest[:j], true
}

// The JSON shapes of docs/api.md, as a client sees them.
type (
	skuJSON struct {
		SKU              string  `json:"sku"`
		Stock            int64   `json:"stock"`
		Available        int64   `json:"available"`
		Held             int64   `json:"held"`
		Sold             int64   `json:"sold"`
		PerCustomerLimit int64   `json:"per_customer_limit"`
		HoldSeconds      int64   `json:"hold_seconds"`
		OpensAt          *string `json:"opens_at"`
	}
	reservationJSON struct {
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
	sessionJSON struct {
		Token      string `json:"token"`
		CustomerID string `json:"customer_id"`
		ExpiresAt  string `json:"expires_at"`
	}
	pageJSON struct {
		Items      []reservationJSON `json:"items"`
		NextCursor *string           `json:"next_cursor"`
	}
	problemJSON struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}
)

// apiClient calls the API of one server.
type apiClient struct {
	base string
	hc   *http.Client
}

// newClient returns a client of base with connections for concurrency requests in
// flight, closed at cleanup.
func newClient(tb testing.TB, base string, concurrency int) *apiClient {
	tr := &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}
	tb.Cleanup(tr.CloseIdleConnections)
	// Every answer must follow the OpenAPI document.
	return &apiClient{base: base, hc: &http.Client{Transport: openapitest.NewTransport(tr), Timeout: 60 * time.Second}}
}

// newAdmin returns a client package Client of base with the test admin token and
// connections for concurrency requests in flight, validating every answer against the
// OpenAPI document. Tests use it wherever they do not test the wire format itself.
func newAdmin(tb testing.TB, base string, concurrency int) *client.Client {
	tb.Helper()
	tr := &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}
	tb.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: openapitest.NewTransport(tr), Timeout: 60 * time.Second}
	c, err := client.New(base, client.WithToken(testAdminToken), client.WithDoer(hc))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// apiResponse is a response read whole.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *apiResponse) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// do sends one request; body, if not nil, is sent as JSON; hdr holds extra headers as
// name, value pairs.
func (c *apiClient) do(ctx context.Context, method, path, token string, body any, hdr ...string) (*apiResponse, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return &apiResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// must sends one request, fails the test unless the status is want, and decodes the
// body into out when out is not nil.
func (c *apiClient) must(tb testing.TB, want int, out any, method, path, token string, body any, hdr ...string) *apiResponse {
	tb.Helper()
	r, err := c.do(tb.Context(), method, path, token, body, hdr...)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		tb.Fatalf("%s %s: got %s, want status %d", method, path, r, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			tb.Fatalf("%s %s: decode %s: %v", method, path, r.Body, err)
		}
	}
	return r
}

// mustProblem sends one request and fails the test unless the answer is a problem
// document with the status and code.
func (c *apiClient) mustProblem(tb testing.TB, status int, code, method, path, token string, body any, hdr ...string) problemJSON {
	tb.Helper()
	var p problemJSON
	r := c.must(tb, status, &p, method, path, token, body, hdr...)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		tb.Errorf("%s %s: Content-Type %q, want application/problem+json", method, path, ct)
	}
	if p.Code != code || p.Status != status {
		tb.Fatalf("%s %s: problem %+v, want status %d code %s", method, path, p, status, code)
	}
	return p
}

// mustSession issues a session for customer, with the test admin token or admin[0].
func (c *apiClient) mustSession(tb testing.TB, customer string, admin ...string) string {
	tb.Helper()
	tok := testAdminToken
	if len(admin) > 0 {
		tok = admin[0]
	}
	var s sessionJSON
	c.must(tb, http.StatusCreated, &s, "POST", "/v1/sessions", tok, map[string]any{"customer_id": customer})
	if s.Token == "" || s.CustomerID != customer {
		tb.Fatalf("session %+v for %s", s, customer)
	}
	return s.Token
}

// allOrders pages through GET /v1/orders with query (e.g. "sku=x") and returns every
// item in order.
func (c *apiClient) allOrders(ctx context.Context, query string) ([]reservationJSON, error) {
	var items []reservationJSON
	cursor := ""
	for {
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, err
		}
		q.Set("limit", "1000")
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r, err := c.do(ctx, "GET", "/v1/orders?"+q.Encode(), testAdminToken, nil)
		if err != nil {
			return nil, err
		}
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("GET /v1/orders: %s", r)
		}
		var p pageJSON
		if err := json.Unmarshal(r.Body, &p); err != nil {
			return nil, fmt.Errorf("GET /v1/orders: decode: %w", err)
		}
		items = append(items, p.Items...)
		if p.NextCursor == nil {
			return items, nil
		}
		cursor = *p.NextCursor
	}
}

// waitLedger pages through the orders of query until they are exactly want (id →
// status), each once, or fails after a timeout: the ledger follows the engine
// asynchronously but must converge.
func (c *apiClient) waitLedger(tb testing.TB, query string, want map[string]string) []reservationJSON {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		items, err := c.allOrders(tb.Context(), query)
		if err != nil {
			tb.Fatal(err)
		}
		diff := ledgerDiff(items, want)
		if diff == "" {
			return items
		}
		if time.Now().After(deadline) {
			tb.Fatalf("ledger (%s) did not converge within 30 s: %s", query, diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ledgerDiff describes how items differ from want (id → status): "" when they are
// equal, each id exactly once, in ascending id order.
func ledgerDiff(items []reservationJSON, want map[string]string) string {
	var b strings.Builder
	seen := make(map[string]bool, len(items))
	for i, it := range items {
		if seen[it.ID] {
			fmt.Fprintf(&b, "id %s listed twice; ", it.ID)
		}
		seen[it.ID] = true
		if i > 0 && items[i-1].ID >= it.ID {
			fmt.Fprintf(&b, "ids out of order at %d; ", i)
		}
		st, ok := want[it.ID]
		switch {
		case !ok:
			fmt.Fprintf(&b, "unexpected id %s; ", it.ID)
		case st != it.Status:
			fmt.Fprintf(&b, "id %s is %s, want %s; ", it.ID, it.Status, st)
		}
	}
	missing := 0
	for id := range want {
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 {
		fmt.Fprintf(&b, "%d of %d ids missing", missing, len(want))
	}
	return b.String()
}

// checkSKU fails the test unless the SKU's counts are as given and add up.
func checkSKU(tb testing.TB, c *apiClient, sku string, stock, available, held, sold int64) {
	tb.Helper()
	var s skuJSON
	c.must(tb, http.StatusOK, &s, "GET", "/v1/skus/"+sku, testAdminToken, nil)
	if s.Stock != stock || s.Available != available || s.Held != held || s.Sold != sold {
		tb.Fatalf("SKU %s = %+v, want stock %d available %d held %d sold %d", sku, s, stock, available, held, sold)
	}
}

// sortedKeys returns the keys of m in order, for stable messages.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// parallel calls fn(i) for i in [0, n) from workers goroutines and fails the test with
// the first error; the workers stop taking work after an error.
func parallel(tb testing.TB, n, workers int, fn func(i int) error) {
	tb.Helper()
	var (
		next     atomic.Int64
		firstErr error
		errOnce  sync.Once
		failed   atomic.Bool
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
}
