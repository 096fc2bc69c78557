package loadtest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/revenueguard/revguard/loadtest"
)

// soldOutShop answers the load test's requests with canned documents, at the least cost
// a server can: a SKU with no stock, sessions for anyone, and 409 sold_out to every
// reservation. It lets a benchmark see what the load generator itself costs.
func soldOutShop(tb testing.TB) string {
	tb.Helper()
	var n atomic.Int64
	sku := []byte(`{"sku":"s","stock":0,"available":0,"held":0,"sold":0,"per_customer_limit":1,"hold_seconds":600,"opens_at":null}` + "\n")
	soldOut := []byte(`{"type":"https://revenueguard.dev/problems/sold_out","title":"Sold out","status":409,"detail":"no units are available","code":"sold_out"}` + "\n")
	write := func(w http.ResponseWriter, status int, ctype string, b []byte) {
		w.Header()["Content-Type"] = []string{ctype}
		w.WriteHeader(status)
		w.Write(b)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/skus/{sku}", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusCreated, "application/json", sku)
	})
	mux.HandleFunc("GET /v1/skus/{sku}", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusOK, "application/json", sku)
	})
	mux.HandleFunc("POST /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		b := strconv.AppendInt([]byte(`{"token":"t`), n.Add(1), 10)
		b = append(b, `","customer_id":"c","expires_at":"2030-01-01T00:00:00Z"}`...)
		write(w, http.StatusCreated, "application/json", b)
	})
	mux.HandleFunc("POST /v1/skus/{sku}/reservations", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusConflict, "application/problem+json", soldOut)
	})
	mux.HandleFunc("GET /v1/orders", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusOK, "application/json", []byte(`{"items":[],"next_cursor":null}`+"\n"))
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv.URL
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSaleSoldOut plays a burst sale of 2000 customers with two attempts each,
// against a server that refuses every reservation sold_out at almost no cost: what a
// crowd's requests cost the load generator (client, recording, checks), server of
// nothing included. It reports the CPU time per request of the whole run (sessions
// included) and the sale's own rate.
//
//	go test -run '^$' -bench SaleSoldOut -benchtime 5x ./loadtest
func BenchmarkSaleSoldOut(b *testing.B) {
	url := soldOutShop(b)
	s := loadtest.DefaultScenario()
	s.Customers, s.Stock, s.Bots, s.Confirm, s.Release = 2000, 0, 0, 0, 0
	s.Arrival, s.HoldSeconds, s.Seed = loadtest.ArrivalBurst, 600, 1
	b.ReportAllocs()
	var requests, reserves int64
	var cpu time.Duration
	var sale float64
	for b.Loop() {
		r := loadtest.NewRunner(s, "admin", url)
		r.LedgerWait = 5 * time.Second
		c0 := cpuTime(b)
		rep, err := r.Run(context.Background())
		cpu += cpuTime(b) - c0
		if err != nil {
			b.Fatal(err)
		}
		if err := rep.Err(); err != nil {
			b.Fatal(err)
		}
		for _, o := range rep.Outcomes {
			requests += o.Count
		}
		reserves += rep.Requests
		sale += rep.SaleSeconds
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(requests), "cpu-µs/req")
	b.ReportMetric(float64(reserves)/sale, "sale-req/s")
}
