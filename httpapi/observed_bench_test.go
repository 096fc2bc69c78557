package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/webhook"
)

// BenchmarkReserveObserved measures what watching a sale costs the hot path: the
// requests per second of POST /v1/skus/{sku}/reservations (201, on the durable
// journal, bot check and rate limits off) on three servers with 1,000 SKUs each:
//
//   - plain: no change log;
//   - quiet: the change log follows the journal, standing aside at peaks (as in
//     production), nobody watches;
//   - observed: the change log, a dashboard stream open (a snapshot of the 1,000 SKUs
//     and the metrics every second) and three webhook endpoints on loopback wanting
//     every change, each delivery signed and POSTed (also standing aside at peaks).
//
// Each iteration sends one burst per server, in turn, and after each burst waits
// (untimed) until that server's change log and webhooks have caught up, so that no
// server's background work runs during another's burst. observed/quiet is the cost of
// the dashboard and the webhooks; quiet/plain that of the change log; drain-ms is how
// long the webhooks took, after the observed burst ended, to deliver its last change.
//
//	go test ./httpapi -run '^$' -bench ReserveObserved -benchtime 10x
func BenchmarkReserveObserved(b *testing.B) {
	conns, burstSize := *benchConns, *benchBurst
	type server struct {
		name  string
		e     *env
		conns []*loadConn
		reqs  [][]byte
		took  time.Duration
	}
	open := func(name string, changes bool) *server {
		s := &server{name: name, e: mustOpenEnv(b, envOptions{noLedger: true, changes: changes, changesPeak: changes, edit: func(s *httpapi.Server) {
			if s.Dashboard != nil {
				s.Dashboard.Interval = time.Second
			}
		}})}
		for i := range 1000 {
			s.e.putSKU(fmt.Sprintf("sku-%04d", i), `{"stock":100}`)
		}
		s.e.putSKU("bench", `{"stock":1000000000,"per_customer_limit":1000000,"hold_seconds":86400}`)
		body := `{"quantity":1}`
		for i := range conns {
			tok := s.e.session(fmt.Sprintf("bench-%d", i))
			s.reqs = append(s.reqs, []byte("POST /v1/skus/bench/reservations HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "+tok+
				"\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body))
			s.conns = append(s.conns, dialLoad(b, s.e.srv.Listener.Addr().String()))
		}
		return s
	}
	plain, quiet, observed := open("plain", false), open("quiet", true), open("observed", true)

	// The observed server's watchers: three endpoints and their dispatcher, and a
	// dashboard stream read to the end.
	var delivered atomic.Int64
	for range 3 {
		rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			delivered.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}))
		b.Cleanup(rcv.Close)
		if _, err := observed.e.api.Webhooks.CreateWebhook(b.Context(), revguard.Webhook{ID: "wh_" + randomHex(10),
			URL: rcv.URL, Secret: webhook.NewSecret(), CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	d := &webhook.Dispatcher{Store: observed.e.api.Webhooks, Changes: observed.e.api.Changes, Peak: observed.e.peak}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	_, snapshots := observed.e.stream(b, "/v1/dashboard/stream", observed.e.admin, nil)
	var seen atomic.Int64
	go func() {
		for range snapshots {
			seen.Add(1)
		}
	}()

	// caughtUp waits until s's change log has every event of its journal, and (observed)
	// every endpoint every change.
	caughtUp := func(s *server) {
		cw, ok := s.e.api.Changes.(*revguard.ChangeWriter)
		if !ok {
			return
		}
		inv := s.e.inv.(*inproc.Inventory)
		for cw.JournalSeq() < inv.AppliedSeq() {
			time.Sleep(time.Millisecond)
		}
		if s != observed {
			return
		}
		for {
			list, err := s.e.api.Webhooks.ListWebhooks(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			all := true
			for _, w := range list {
				all = all && w.Cursor >= cw.LastChange()
			}
			if all {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	servers := []*server{plain, quiet, observed}
	for _, s := range servers {
		runBurst(b, s.conns, conns, 201, func(c int) []byte { return s.reqs[c] }) // warm up
		caughtUp(s)
	}
	var drain time.Duration
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range servers {
			s.took += runBurst(b, s.conns, burstSize, 201, func(c int) []byte { return s.reqs[c] })
			start := time.Now()
			caughtUp(s)
			if s == observed {
				drain += time.Since(start)
			}
		}
	}
	rate := map[string]float64{}
	for _, s := range servers {
		rate[s.name] = float64(burstSize*b.N) / s.took.Seconds()
		b.ReportMetric(rate[s.name], s.name+"-req/s")
	}
	b.ReportMetric(rate["observed"]/rate["quiet"], "observed/quiet")
	b.ReportMetric(rate["quiet"]/rate["plain"], "quiet/plain")
	b.ReportMetric(float64(drain.Milliseconds())/float64(b.N), "drain-ms")
	b.ReportMetric(float64(delivered.Load())/float64(b.N), "deliveries/op")
	if seen.Load() == 0 {
		b.Fatal("the dashboard stream sent nothing")
	}
}
