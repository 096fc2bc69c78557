package httpapi_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi/openapitest"
)

// TestRaceForStock is the flash sale of issue 3 through HTTP: 2,000 customers race for
// 100 units with 256 requests in flight. Exactly 100 get a hold, every other answer is
// 409 sold_out, the SKU's counts are exact, and the ledger, once caught up, holds
// exactly the 100 acknowledged reservations, each once.
func TestRaceForStock(t *testing.T) { eachBackend(t, testRaceForStock) }

func testRaceForStock(t *testing.T, b backend) {
	const (
		stock    = 100
		inFlight = 256
	)
	customers := 2000
	if b == distributed {
		// Every request is a few round trips to Redis: a shorter race keeps the suite quick
		// under -race (cmd/revguard's TestFleet sells 100 units to 2,000 buyers on three nodes).
		customers = 500
	}
	// A generous verifier deadline: under -race, 256 verifications at once are slow.
	e := mustOpenEnv(t, envOptions{backend: b, botCheck: true, botTimeout: 20 * time.Second, customerRate: revguard.Rate{N: 10, Per: time.Second}})
	e.hc.Transport.(*openapitest.Transport).Base.(*http.Transport).MaxIdleConnsPerHost = inFlight
	e.putSKU("drop", fmt.Sprintf(`{"stock":%d,"per_customer_limit":1}`, stock))

	tokens := make([]string, customers)
	start := time.Now()
	parallel(32, customers, func(i int) { tokens[i] = e.session(fmt.Sprintf("customer-%04d", i)) })
	t.Logf("%d sessions issued in %v", customers, time.Since(start))
	start = time.Now()
	turnstile := make([]string, customers)
	for i := range turnstile {
		turnstile[i] = e.verifier.Token()
	}

	answers := make([]*response, customers)
	parallel(inFlight, customers, func(i int) {
		answers[i] = e.reserve(tokens[i], "drop", ``, map[string]string{"CF-Turnstile-Response": turnstile[i]})
	})

	t.Logf("%d reservation requests answered in %v", customers, time.Since(start))
	var held []string
	for i, r := range answers {
		switch r.Status {
		case http.StatusCreated:
			var res reservation
			r.json(t, 201, &res)
			if res.CustomerID != fmt.Sprintf("customer-%04d", i) || res.Status != "held" {
				t.Fatalf("customer %d got %+v", i, res)
			}
			held = append(held, res.ID)
		default:
			r.wantProblem(t, http.StatusConflict, revguard.CodeSoldOut)
		}
	}
	if len(held) != stock {
		t.Fatalf("%d holds for %d units", len(held), stock)
	}
	if s := e.checkInvariant("drop"); s.Available != 0 || s.Held != stock || s.Sold != 0 {
		t.Fatalf("after the race: %+v", s)
	}
	t.Logf("verifier calls: %d of %d requests (the rest were refused as sold out first)", e.verifier.Calls(), customers)

	metrics := string(e.do(req{Method: "GET", Path: "/metrics"}).Body)
	for _, want := range []string{
		fmt.Sprintf(`revguard_reservations_total{outcome="reserved"} %d`, stock),
		fmt.Sprintf(`revguard_reservations_total{outcome="sold_out"} %d`, customers-stock),
		fmt.Sprintf(`revguard_bot_checks_total{outcome="ok"} %d`, e.verifier.Calls()),
		fmt.Sprintf(`revguard_bot_check_duration_seconds_count %d`, e.verifier.Calls()),
		fmt.Sprintf(`revguard_http_requests_total{route="POST /v1/skus/{sku}/reservations",status="201"} %d`, stock),
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	e.waitLedger()
	var ledger []string
	path := "/v1/orders?sku=drop&limit=37"
	for {
		var page orderPage
		e.do(req{Method: "GET", Path: path, Token: e.admin}).json(t, 200, &page)
		for _, it := range page.Items {
			if it.Status != "held" {
				t.Fatalf("ledger item %+v", it)
			}
			ledger = append(ledger, it.ID)
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/orders?sku=drop&limit=37&cursor=" + *page.NextCursor
	}
	sort.Strings(held)
	if fmt.Sprint(ledger) != fmt.Sprint(held) {
		t.Fatalf("ledger ids (%d) differ from the acknowledged holds (%d)", len(ledger), len(held))
	}
}

// parallel calls fn(0..n-1) from at most width goroutines at a time.
func parallel(width, n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range width {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
