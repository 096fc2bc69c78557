package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/revenueguard/revguard/client"
	"github.com/revenueguard/revguard/httpapi/openapitest"
)

// dashboardLink finds the dashboard link serve prints at start.
var dashboardLink = regexp.MustCompile(`live dashboard .*: (http://\S+/dashboard/#token=dsh_\S+)`)

// waitJS waits until the expression is true in the page.
func (b *browser) waitJS(tb testing.TB, what, expr string) {
	tb.Helper()
	b.do(tb, "wait for "+what, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))(ctx, t)
		if err != nil {
			html, _ := chromedp.Evaluate[string](`document.querySelector("main")?.innerText ?? ""`)(ctx, t)
			return chromedp.Void{}, fmt.Errorf("%w; the page shows:\n%s", err, html)
		}
		return chromedp.Void{}, nil
	})
}

// skuCells is a JS expression: the SKU row's counts as "stock/available/held/sold".
func skuCells(sku string) string {
	return fmt.Sprintf(`(() => { const r = document.querySelector('tr[data-sku=%q]'); if (!r) return "";
		return ["stock","available","held","sold"].map(c => r.querySelector("td." + c).textContent).join("/"); })()`, sku)
}

// TestDashboard opens the live dashboard of a running server in headless Chromium,
// first with the link printed at start and then with the admin token typed into the
// page, runs a small sale, and sees the SKUs' counts, the totals, the decisions chart's
// outcomes and a webhook endpoint move to their final values without a reload; then it
// saves a screenshot (docs/dashboard.png with -update-screenshot). No request of the
// page leaves loopback.
func TestDashboard(t *testing.T) {
	b := mustStartBrowser(t)
	srv := MustRunServer(t, t.TempDir(), nil)
	m := dashboardLink.FindStringSubmatch(srv.Log.String())
	if m == nil {
		t.Fatalf("no dashboard link in the log:\n%s", srv.Log)
	}
	ctx := t.Context()
	admin, err := client.New(srv.URL, client.WithToken(testAdminToken),
		client.WithDoer(&http.Client{Transport: openapitest.NewTransport(nil), Timeout: 30 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	for sku, stock := range map[string]int64{"sneaker-42": 20, "hoodie-black": 10, "cap-red": 8} {
		if _, err := admin.PutSKU(ctx, sku, client.SKUSettings{Stock: stock, PerCustomerLimit: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// A webhook endpoint that accepts everything, shown in the webhooks panel.
	var mu sync.Mutex
	got := 0
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got++
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)
	mustCreateWebhook(t, srv.URL, receiver.URL+"/hooks", "sku.sold_out", "reservation.confirmed")

	// The link opens the board at once.
	b.do(t, "open the dashboard link", chromedp.Navigate(m[1]))
	b.waitJS(t, "the board", `!document.querySelector("#board").hidden && document.querySelector("#conn").textContent === "live"`)
	b.waitJS(t, "sneaker-42 before the sale", skuCells("sneaker-42")+` === "20/20/0/0"`)
	if loc, err := chromedp.Run(b.ctx, chromedp.Location()); err != nil || !strings.HasSuffix(loc, "/dashboard/") {
		t.Errorf("the address bar shows %q (%v); want the token gone", loc, err)
	}

	// The same tab without its stored token asks for the admin token, once.
	b.do(t, "forget the token", chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`), chromedp.Navigate(srv.URL+"/dashboard/"))
	b.waitJS(t, "the token form", `!document.querySelector("#login").hidden`)
	b.do(t, "enter a wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-admin-token"), chromedp.Click(chromedp.CSS("#login button")))
	b.waitJS(t, "the refusal", `document.querySelector("#login-error").textContent !== ""`)
	b.do(t, "enter the admin token", chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken), chromedp.Click(chromedp.CSS("#login button")))
	b.waitJS(t, "the board", `!document.querySelector("#board").hidden`)
	b.waitJS(t, "hoodie-black before the sale", skuCells("hoodie-black")+` === "10/10/0/0"`)

	// The sale, in three waves a second apart so that the chart has a shape: 30
	// customers for 20 sneakers (10 sold out), each confirms or releases; 12 for 10
	// hoodies, all confirmed (sold out); a customer trying twice hits the limit.
	var holds []*client.Reservation
	var clients []*client.Client
	buyers := 0
	reserve := func(sku string, n int) {
		for range n {
			buyers++
			sess, err := admin.CreateSession(ctx, client.SessionParams{CustomerID: fmt.Sprintf("buyer-%d", buyers)})
			if err != nil {
				t.Fatal(err)
			}
			c := admin.WithToken(sess.Token)
			res, err := c.Reserve(ctx, sku, client.ReserveParams{})
			if err == nil {
				holds, clients = append(holds, res), append(clients, c)
				// The last unit's buyer is told sold_out first.
				if _, err := c.Reserve(ctx, sku, client.ReserveParams{}); client.ErrorCode(err) != "limit_exceeded" && client.ErrorCode(err) != "sold_out" {
					t.Fatalf("a second hold: %v; want limit_exceeded", err)
				}
			} else if client.ErrorCode(err) != "sold_out" {
				t.Fatalf("reserve %s: %v", sku, err)
			}
		}
	}
	for _, wave := range []struct {
		sku string
		n   int
	}{{"sneaker-42", 6}, {"sneaker-42", 10}, {"hoodie-black", 5}, {"sneaker-42", 14}, {"hoodie-black", 7}} {
		reserve(wave.sku, wave.n)
		time.Sleep(time.Second)
	}
	for i, h := range holds {
		if h.SKU == "sneaker-42" && i%4 == 3 {
			_, err = clients[i].Release(ctx, h.ID)
		} else {
			_, err = clients[i].Confirm(ctx, h.ID, client.ConfirmParams{OrderRef: "order-" + h.ID})
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	b.waitJS(t, "sneaker-42's final counts", skuCells("sneaker-42")+` === "20/5/0/15"`)
	b.waitJS(t, "hoodie-black sold out", skuCells("hoodie-black")+` === "10/0/0/10" && document.querySelector('tr[data-sku="hoodie-black"]').textContent.includes("SOLD OUT")`)
	b.waitJS(t, "cap-red untouched", skuCells("cap-red")+` === "8/8/0/0"`)
	b.waitJS(t, "the totals", `document.querySelector("#t-sold").textContent === "25" && document.querySelector("#t-available").textContent === "13"`)
	b.waitJS(t, "the chart's outcomes", `["201 reserved", "sold_out", "limit_exceeded"].every(o => document.querySelector("#legend").textContent.includes(o))`)
	b.waitJS(t, "the latency", `document.querySelector("#t-latency").textContent.includes("·")`)
	b.waitJS(t, "the webhook endpoint", `document.querySelector("#webhooks").textContent.includes("/hooks") && document.querySelector("#webhooks").textContent.includes("active")`)
	b.waitJS(t, "the node", `document.querySelector("#t-nodes").textContent === "1 / 1 ready"`)
	if sku, err := admin.GetSKU(ctx, "sneaker-42"); err != nil || sku.Sold != 15 || sku.Available != 5 {
		t.Fatalf("sneaker-42: %+v, %v", sku, err)
	}

	b.do(t, "size the window", chromedp.EmulateViewport(1100, 900))
	shot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if off := b.offLoopback(); len(off) > 0 {
		t.Fatalf("the page tried to reach beyond loopback: %v", off)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil || img.Bounds().Dx() < 800 {
		t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(t.TempDir(), "dashboard.png")
	if *updateScreenshot {
		out = filepath.Join("..", "..", "docs", "dashboard.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%dx%d)", out, img.Bounds().Dx(), img.Bounds().Dy())
}

// mustCreateWebhook registers an endpoint through the API (its answer checked
// against the OpenAPI document) and returns its id and secret.
func mustCreateWebhook(tb testing.TB, base, url string, types ...string) (id, secret string) {
	tb.Helper()
	body := fmt.Sprintf(`{"url": %q, "types": [%s]}`, url, quoteJoin(types))
	req, _ := http.NewRequest("POST", base+"/v1/webhooks", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: openapitest.NewTransport(nil)}).Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var w struct{ ID, Secret string }
	if err := json.NewDecoder(resp.Body).Decode(&w); err != nil || resp.StatusCode != 201 {
		tb.Fatalf("create webhook: %d, %v", resp.StatusCode, err)
	}
	return w.ID, w.Secret
}

func quoteJoin(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// TestDashboard_Modes: in both modes the dashboard's stream serves snapshots with the
// SKUs, the node's health and the ledger lag, and the webhooks are served.
func TestDashboard_Modes(t *testing.T) { eachMode(t, testDashboardModes) }

func testDashboardModes(t *testing.T, m mode) {
	srv := MustRunServer(t, t.TempDir(), nil, storeArgs(t, m)...)
	hc := &http.Client{Transport: openapitest.NewTransport(nil), Timeout: 30 * time.Second}
	admin, err := client.New(srv.URL, client.WithToken(testAdminToken), client.WithDoer(hc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutSKU(t.Context(), "mode-sku", client.SKUSettings{Stock: 3}); err != nil {
		t.Fatal(err)
	}
	sc := openDashboardStream(t, srv.URL)
	var snap struct {
		SKUs []struct {
			SKU   string
			Stock int64
		}
		Nodes []struct {
			Name  string
			Ready bool
		}
		LedgerLag *float64 `json:"ledger_lag_seconds"`
	}
	// Both modes list the SKU and this node, ready (in distributed mode from the
	// fleet's register in Redis, which the node reports to once a second).
	wantNode := map[mode]string{embeddedMode: "this node", distributedMode: strings.TrimPrefix(srv.URL, "http://")}[m]
	found := false
	for n := 0; !found && sc.Scan(); {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if err := json.Unmarshal([]byte(data), &snap); err != nil {
			t.Fatal(err)
		}
		found = len(snap.Nodes) == 1 && snap.Nodes[0].Ready && strings.HasSuffix(snap.Nodes[0].Name, wantNode) &&
			len(snap.SKUs) == 1 && snap.SKUs[0].SKU == "mode-sku" && snap.SKUs[0].Stock == 3 && snap.LedgerLag != nil
		if n++; n == 10 {
			break
		}
	}
	if !found {
		t.Fatalf("%s: 10 snapshots without the SKU and this node, ready; the last: %+v", m, snap)
	}
	// Both modes have the webhooks (and the event stream: TestFleet, TestEvents).
	r, _ := http.NewRequest("GET", srv.URL+"/v1/webhooks", nil)
	r.Header.Set("Authorization", "Bearer "+testAdminToken)
	res, err := hc.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("%s: GET /v1/webhooks: %d; want 200", m, res.StatusCode)
	}
}
