package httpapi_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/turnstile"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

var (
	benchConns  = flag.Int("conns", 64, "keep-alive connections of the gateway benchmark's load generator")
	benchBurst  = flag.Int("burst", 4096, "requests per variant per iteration of the gateway benchmark")
	benchNoSync = flag.Bool("nosync", false, "journal without fsync in the gateway benchmark (to separate the disk's share)")
	benchLedger = flag.Bool("ledger", false, "run the ledger writer (SQLite, cold path) during the gateway benchmark")
	benchOnly   = flag.String("variants", "bare,reserve,soldout,botcheck", "variants of the gateway benchmark to run (for profiling one)")
)

// BenchmarkGateway measures, in one run and with one load generator, the requests per
// second of:
//
//   - bare: a plain net/http handler that decodes a small JSON body with encoding/json
//     and encodes a small JSON answer (the yardstick);
//   - reserve: POST /v1/skus/{sku}/reservations answered 201, bot check and rate limits
//     off, on the real durable journal (every 201 waits for its fsync);
//   - soldout: the same request on a sold-out SKU, refused 409 on the fast path;
//   - botcheck: reserve with the bot check on, against the fake verifier in process.
//
// Each iteration sends one burst of requests per variant, interleaved, so that drift of
// the machine hits all alike. The load generator is a minimal HTTP/1.1 client on
// keep-alive loopback connections (-conns, default 64), lighter than net/http's client.
//
// The ledger writer (the cold path: every event into SQLite) is off unless -ledger: on
// two cores it takes more CPU than the gateway itself and would measure SQLite, not the
// endpoint. In production it runs beside the server and catches up after a burst.
//
//	go test ./httpapi -run '^$' -bench Gateway -benchtime 20x
func BenchmarkGateway(b *testing.B) {
	conns, burstSize := *benchConns, *benchBurst

	bare := httptest.NewServer(http.HandlerFunc(bareHandler))
	b.Cleanup(bare.Close)

	// Group commits of the reserve variant's journal: how many, how many events, how
	// long their fsyncs took (the hook runs on the journal's flusher goroutine).
	var flushes, flushed atomic.Int64
	var fsyncNanos atomic.Int64
	api := mustOpenEnv(b, envOptions{noLedger: !*benchLedger, noSync: *benchNoSync, onFlush: func(events, _ int, fsync time.Duration) {
		flushes.Add(1)
		flushed.Add(int64(events))
		fsyncNanos.Add(int64(fsync))
	}})
	api.putSKU("bench", `{"stock":1000000000,"per_customer_limit":1000000,"hold_seconds":86400}`)
	api.putSKU("gone", `{"stock":0}`)

	verifier := turnstiletest.New()
	bot := mustOpenEnv(b, envOptions{noLedger: !*benchLedger, edit: func(s *httpapi.Server) {
		bc := turnstile.NewBotChecker(turnstiletest.DefaultSecret)
		bc.URL = "http://siteverify.test" + turnstiletest.Path
		bc.Client = verifier.Client()
		s.BotChecker = bc
	}})
	bot.putSKU("bench", `{"stock":1000000000,"per_customer_limit":1000000,"hold_seconds":86400}`)

	body := `{"quantity":1}`
	post := func(path, token, extra string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer " + token +
			"\r\nContent-Type: application/json\r\n" + extra + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	type variant struct {
		name   string
		addr   string
		status int
		req    func(conn int) []byte
		conns  []*loadConn
		took   time.Duration
	}
	var apiTokens, botTokens []string
	for i := range conns {
		apiTokens = append(apiTokens, api.session(fmt.Sprintf("bench-%d", i)))
		botTokens = append(botTokens, bot.session(fmt.Sprintf("bench-%d", i)))
	}
	fixed := func(reqs []string) func(int) []byte {
		bs := make([][]byte, len(reqs))
		for i, r := range reqs {
			bs[i] = []byte(r)
		}
		return func(c int) []byte { return bs[c] }
	}
	var bareReqs, reserveReqs, soldReqs []string
	for i := range conns {
		bareReqs = append(bareReqs, post("/reserve", "x", ""))
		reserveReqs = append(reserveReqs, post("/v1/skus/bench/reservations", apiTokens[i], ""))
		soldReqs = append(soldReqs, post("/v1/skus/gone/reservations", apiTokens[i], ""))
	}
	variants := []*variant{
		{name: "bare", addr: bare.Listener.Addr().String(), status: 201, req: fixed(bareReqs)},
		{name: "reserve", addr: api.srv.Listener.Addr().String(), status: 201, req: fixed(reserveReqs)},
		{name: "soldout", addr: api.srv.Listener.Addr().String(), status: 409, req: fixed(soldReqs)},
		{name: "botcheck", addr: bot.srv.Listener.Addr().String(), status: 201, req: func(c int) []byte {
			return []byte(post("/v1/skus/bench/reservations", botTokens[c], "CF-Turnstile-Response: "+verifier.Token()+"\r\n"))
		}},
	}
	variants = slices.DeleteFunc(variants, func(v *variant) bool { return !slices.Contains(strings.Split(*benchOnly, ","), v.name) })
	for _, v := range variants {
		for range conns {
			v.conns = append(v.conns, dialLoad(b, v.addr))
		}
		runBurst(b, v.conns, conns, v.status, v.req) // warm up
	}

	flushes.Store(0)
	flushed.Store(0)
	fsyncNanos.Store(0)
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range variants {
			v.took += runBurst(b, v.conns, burstSize, v.status, v.req)
		}
	}
	rate := map[string]float64{}
	for _, v := range variants {
		rate[v.name] = float64(burstSize*b.N) / v.took.Seconds()
		b.ReportMetric(rate[v.name], v.name+"-req/s")
	}
	if rate["bare"] > 0 {
		for _, name := range []string{"reserve", "soldout", "botcheck"} {
			if rate[name] > 0 {
				b.ReportMetric(rate[name]/rate["bare"], name+"/bare")
			}
		}
	}
	b.ReportMetric(float64(conns), "conns")
	if n := flushes.Load(); n > 0 {
		b.ReportMetric(float64(flushed.Load())/float64(n), "events/fsync")
		b.ReportMetric(float64(fsyncNanos.Load())/float64(n)/1e6, "fsync-ms")
	}
}

// bareHandler is the yardstick: decode a small JSON body, encode a small JSON answer.
func bareHandler(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Quantity int64 `json:"quantity"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	out := struct {
		ID         string `json:"id"`
		SKU        string `json:"sku"`
		CustomerID string `json:"customer_id"`
		Quantity   int64  `json:"quantity"`
		Status     string `json:"status"`
		CreatedAt  string `json:"created_at"`
	}{"01J0000000000000000000000", "bench", "bench-0", in.Quantity, "held", "2026-11-27T10:00:00Z"}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(out)
}

// loadConn is one keep-alive HTTP/1.1 connection of the load generator: it writes a
// prepared request and reads the answer's status, headers and Content-Length body.
type loadConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialLoad(tb testing.TB, addr string) *loadConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &loadConn{c: c, br: bufio.NewReaderSize(c, 8192)}
}

func (lc *loadConn) roundTrip(req []byte) (int, error) {
	if _, err := lc.c.Write(req); err != nil {
		return 0, err
	}
	line, err := lc.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := 0
	for {
		h, err := lc.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		if len(h) > 15 && strings.EqualFold(string(h[:15]), "content-length:") {
			length, err = strconv.Atoi(strings.TrimSpace(string(h[15:])))
			if err != nil {
				return 0, err
			}
		}
	}
	if _, err := lc.br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

// runBurst sends total requests spread over conns, each connection one request at a
// time, and returns the wall time. Any answer other than want fails the benchmark.
func runBurst(b *testing.B, conns []*loadConn, total, want int, req func(conn int) []byte) time.Duration {
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	start := time.Now()
	for i, lc := range conns {
		n := total / len(conns)
		if i < total%len(conns) {
			n++
		}
		wg.Go(func() {
			for range n {
				status, err := lc.roundTrip(req(i))
				if err == nil && status != want {
					err = fmt.Errorf("status %d, want %d", status, want)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return took
}
