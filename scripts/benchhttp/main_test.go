package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/valyala/fasthttp"
)

// TestBacklogOf reads the backlog gauges the way waitIdle does: the ledger's and the
// change log's lag summed, and an error, not a silent zero, when a server shows
// neither (a renamed metric would otherwise make every wait end at once).
func TestBacklogOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		metrics string
		want    float64
		wantErr bool
	}{
		{"Both", "# HELP x\nrevguard_ledger_lag_events 120\nrevguard_ledger_lag_seconds 3\nrevguard_changes_lag_events 5\n", 125, false},
		{"Idle", "revguard_ledger_lag_events 0\nrevguard_changes_lag_events 0\n", 0, false},
		{"Exponent", "revguard_ledger_lag_events 1.5e+06\n", 1.5e6, false},
		{"Neither", "revguard_journal_batches_total 7\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/metrics" {
					http.NotFound(w, r)
					return
				}
				w.Write([]byte(tc.metrics))
			}))
			defer srv.Close()
			got, err := backlogOf(context.Background(), srv.URL)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("backlogOf = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestWaitIdle waits until a server's backlog reaches zero: its first three answers
// show a backlog, so it must ask a fourth time.
func TestWaitIdle(t *testing.T) {
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lag := "0"
		if asked.Add(1) <= 3 {
			lag = "42"
		}
		w.Write([]byte(strings.Join([]string{"revguard_ledger_lag_events " + lag, "revguard_changes_lag_events 0", ""}, "\n")))
	}))
	defer srv.Close()
	if err := waitIdle(context.Background(), []string{srv.URL}); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != 4 {
		t.Fatalf("waitIdle asked %d times; want 4 (three answers with a backlog, then none)", n)
	}
}

// TestServerCPU reads this process's CPU time from /proc, as the benchmark reads each
// server's: it grows when the process works, and is unknown for the lua variant.
func TestServerCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system: the benchmark prints no CPU column here")
	}
	const url = "http://self.invalid"
	serverPIDs[url] = os.Getpid()
	defer delete(serverPIDs, url)
	before, ok := serverCPU(target{url: url})
	if !ok {
		t.Fatal("serverCPU of this process: unknown")
	}
	// Work until the CPU time grows (it counts in 10 ms ticks), for at most 10 s.
	after := before
	for start := time.Now(); after <= before && time.Since(start) < 10*time.Second; {
		if after, ok = serverCPU(target{url: url}); !ok {
			t.Fatal("serverCPU of this process: unknown")
		}
	}
	if after <= before {
		t.Fatalf("serverCPU after 10 s of work: %v, before %v", after, before)
	}
	if _, ok := serverCPU(target{url: url, lua: &fleet{}}); ok {
		t.Fatal("serverCPU of the lua variant: known, want unknown (its server is Redis)")
	}
}

// TestParseHistogram reads the reserve route's latency from a /metrics text the way
// the measurement does: the series of one route and status summed, a reading before
// subtracted, the p99 as the bound of its bucket.
func TestParseHistogram(t *testing.T) {
	const route = `route="POST /v1/skus/{sku}/reservations"`
	text := func(ok1, ok2, okInf, soldOut float64) []byte {
		return []byte(fmt.Sprintf(`# TYPE revguard_http_request_duration_seconds histogram
revguard_http_request_duration_seconds_bucket{route="POST /v1/skus/{sku}/reservations",status="201",le="0.001"} %g
revguard_http_request_duration_seconds_bucket{route="POST /v1/skus/{sku}/reservations",status="201",le="0.005"} %g
revguard_http_request_duration_seconds_bucket{route="POST /v1/skus/{sku}/reservations",status="201",le="+Inf"} %g
revguard_http_request_duration_seconds_sum{route="POST /v1/skus/{sku}/reservations",status="201"} 1
revguard_http_request_duration_seconds_count{route="POST /v1/skus/{sku}/reservations",status="201"} %g
revguard_http_request_duration_seconds_bucket{route="POST /v1/skus/{sku}/reservations",status="409",le="0.001"} %g
revguard_http_request_duration_seconds_bucket{route="POST /v1/skus/{sku}/reservations",status="409",le="0.005"} %g
revguard_http_request_duration_seconds_bucket{route="POST /v1/skus/{sku}/reservations",status="409",le="+Inf"} %g
revguard_http_request_duration_seconds_count{route="POST /v1/skus/{sku}/reservations",status="409"} %g
revguard_journal_fsync_seconds_sum 0.5
revguard_journal_fsync_seconds_count 1000
`, ok1, ok2, okInf, okInf, soldOut, soldOut, soldOut, soldOut))
	}
	before, err := parseHistogram(text(10, 10, 10, 7), "revguard_http_request_duration_seconds", route, `status="201"`)
	if err != nil {
		t.Fatal(err)
	}
	// 1,000 more answers: 980 under 1 ms, 15 under 5 ms, 5 above.
	after, err := parseHistogram(text(990, 1005, 1010, 500), "revguard_http_request_duration_seconds", route, `status="201"`)
	if err != nil {
		t.Fatal(err)
	}
	d := after.minus(before)
	if d.count != 1000 || !slices.Equal(d.counts, []float64{980, 995, 1000}) {
		t.Fatalf("difference: count %g, buckets %v; want 1000 and [980 995 1000]", d.count, d.counts)
	}
	if q, ok := d.quantile(0.99); !ok || q != 0.005 {
		t.Fatalf("p99 = %g, %v; want 0.005 (980 + 15 of 1000 answers are under 5 ms)", q, ok)
	}
	if q, ok := d.quantile(0.5); !ok || q != 0.001 {
		t.Fatalf("p50 = %g, %v; want 0.001", q, ok)
	}
	if _, ok := d.quantile(0.999); ok {
		t.Fatal("p99.9 is past the last finite bound: want it unknown")
	}
	fsync, err := parseHistogram(text(0, 0, 0, 0), "revguard_journal_fsync_seconds")
	if err != nil || fsync.count != 1000 || fsync.sum != 0.5 {
		t.Fatalf("fsync: %+v, %v; want 1000 fsyncs taking 0.5 s", fsync, err)
	}
	if p99, mean := statsText(serverStats{latency: d, fsync: fsync}); p99 != "≤5" || mean != "0.50" {
		t.Fatalf("statsText = %q, %q; want ≤5 and 0.50", p99, mean)
	}
}

// TestBareHandlers: the two yardsticks do the same work, so that comparing them
// measures the server cores: the same statuses, content type and body.
func TestBareHandlers(t *testing.T) {
	for _, fast := range []bool{false, true} {
		base := serveTest(t, benchHold, fast)
		for _, tc := range []struct {
			body   string
			status int
			want   string
		}{
			{`{"quantity":3}`, 201, `{"id":"01JBENCH00000000000000000","quantity":3,"status":"held"}` + "\n"},
			{`{"quantity":`, 400, ""},
		} {
			resp, err := http.Post(base+"/reserve", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || tc.want != "" && (string(b) != tc.want || resp.Header.Get("Content-Type") != "application/json") {
				t.Fatalf("%s: POST %s = %d %q (%s); want %d %q (application/json)", base, tc.body, resp.StatusCode, b, resp.Header.Get("Content-Type"), tc.status, tc.want)
			}
		}
		if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: GET /readyz = %v, %v; want 200", base, resp, err)
		}
	}
}

// serveTest serves hold's yardstick, on fasthttp when fast else on net/http, until
// the test ends, and returns its base URL.
func serveTest(t *testing.T, hold holdFunc, fast bool) string {
	t.Helper()
	if !fast {
		srv := httptest.NewServer(bareMux(hold))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: bareFast(hold)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// TestFloorHandlers: each floor yardstick's 201 is a real hold of the engine, durable
// (fsynced) when answered, with the API's reservation object as its body, and still
// there after the engine is reopened; a bad body or quantity holds nothing.
func TestFloorHandlers(t *testing.T) {
	ctx := context.Background()
	for _, fast := range []bool{false, true} {
		dir := t.TempDir()
		e, err := openFloor(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		base := serveTest(t, e.hold, fast)
		var ids []string
		for _, tc := range []struct {
			body   string
			status int
			qty    int64
		}{
			{`{"quantity":2}`, 201, 2},
			{`{"quantity":`, 400, 0},
			{`{"quantity":0}`, 400, 0},
			{`{"quantity":3}`, 201, 3},
		} {
			resp, err := http.Post(base+"/reserve", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				resp.Body.Close()
				t.Fatalf("fast=%v: POST %s = %d, want %d", fast, tc.body, resp.StatusCode, tc.status)
			}
			if tc.status != 201 {
				resp.Body.Close()
				continue
			}
			var got struct {
				ID       string `json:"id"`
				SKU      string `json:"sku"`
				Quantity int64  `json:"quantity"`
				Status   string `json:"status"`
			}
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err != nil || got.ID == "" || got.Quantity != tc.qty || got.SKU != "hot" || got.Status != "held" {
				t.Fatalf("fast=%v: POST %s answered %+v (%v); want a held reservation of %d units of hot", fast, tc.body, got, err, tc.qty)
			}
			if d, last := e.j.Durable(), e.j.LastSeq(); d != last {
				t.Fatalf("fast=%v: answered with the journal durable to seq %d of %d", fast, d, last)
			}
			ids = append(ids, got.ID)
		}
		if e.j.Stats().SyncNanos == 0 {
			t.Errorf("fast=%v: the journal never fsynced", fast)
		}
		if err := e.close(); err != nil {
			t.Fatal(err)
		}
		e, err = openFloor(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		av, err := e.inv.Availability(ctx, "hot")
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 2 || av.Available != revguard.MaxStock-5 {
			t.Errorf("fast=%v: after reopening, holds %v and %d available; want 2 holds and %d", fast, ids, av.Available, revguard.MaxStock-5)
		}
		for _, id := range ids {
			if _, err := e.inv.FindReservation(ctx, id); err != nil {
				t.Errorf("fast=%v: reservation %s after reopening: %v", fast, id, err)
			}
		}
		e.close()
	}
}

// TestOpenLoopCountsStalls: with -rate the built-in generator keeps its schedule while
// the server stalls, so the requests due during a stall carry it in their latency
// (counted from their scheduled instant); the closed loop sees one slow answer per
// connection. The assertions are one-sided: a slower machine only lengthens latencies.
func TestOpenLoopCountsStalls(t *testing.T) {
	const stall = 300 * time.Millisecond
	var first sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		first.Do(func() { time.Sleep(stall) }) // the first request of the run stalls
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	tgt := target{name: "stall", url: srv.URL, path: "/reserve", status: 201}
	for _, tc := range []struct {
		rate  float64
		conns int
	}{{0, 1}, {200, 1}, {200, 4}} {
		rate := tc.rate
		first = sync.Once{}
		o := options{duration: 1500 * time.Millisecond, rate: rate}
		r, err := measureBuiltin(context.Background(), o, tgt, tc.conns)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case rate == 0:
			if r.p50 >= stall/2 {
				t.Errorf("closed loop: p50 %v, want far below the one stalled answer's %v", r.p50, stall)
			}
			continue
		case tc.conns == 1:
			// 300 ms of a 5 ms schedule: about 60 requests due during the stall, 20 % of
			// the run's 300, so the p99 carries most of the stall.
			if r.p99 < stall/2 {
				t.Errorf("rate %v: p99 %v, want at least %v: the stall is missing from the requests due during it", rate, r.p99, stall/2)
			}
		}
		// The connections share the rate: one that sent at the whole rate would send
		// conns times the schedule.
		if limit := int64(rate*o.duration.Seconds()) + int64(tc.conns); r.requests > limit {
			t.Errorf("rate %v over %d connections: %d requests in %v, more than the schedule's %d", rate, tc.conns, r.requests, o.duration, limit)
		}
	}
}

// TestRateFlag: -rate refuses what cannot be a schedule before starting anything.
func TestRateFlag(t *testing.T) {
	for _, v := range []string{"-1", "NaN", "+Inf", "2e7"} {
		err := run(context.Background(), []string{"-rate", v}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-rate") {
			t.Errorf("-rate %s: %v, want an error naming -rate", v, err)
		}
	}
}
