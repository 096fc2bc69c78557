package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
	"github.com/revenueguard/revguard/webhook"
)

// fleetChanges watches a fleet's change log from the outside, as a shop's systems
// would: a webhook endpoint registered on node 1 and an event stream read from node 3.
type fleetChanges struct {
	mu        sync.Mutex
	secret    string
	delivered []revguard.ChangeBody // by first arrival
	bodies    map[string]string     // id → body delivered
	streamed  map[string]string     // id → data read from the event stream
	bad       []string              // what went wrong in a handler
	stopped   bool                  // the event stream is closed: check compares only the webhook
	stop      func()                // closes the event stream
}

// watchChanges starts the receiver, registers it on node 1 and opens the event stream
// on node 3, until the test ends.
func (f *fleet) watchChanges(t *testing.T) *fleetChanges {
	w := &fleetChanges{bodies: map[string]string{}, streamed: map[string]string{}}
	receiver := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		defer w.mu.Unlock()
		id, err := webhook.Verify(w.secret, r.Header, body, time.Now(), webhook.DefaultTolerance)
		if err != nil {
			w.bad = append(w.bad, fmt.Sprintf("delivery that does not verify: %v", err))
			rw.WriteHeader(400)
			return
		}
		if prev, ok := w.bodies[id]; ok {
			if prev != string(body) {
				w.bad = append(w.bad, fmt.Sprintf("%s delivered again with another body", id))
			}
			return // a duplicate, dropped by its id
		}
		var b revguard.ChangeBody
		if err := json.Unmarshal(body, &b); err != nil || b.ID != id {
			w.bad = append(w.bad, fmt.Sprintf("delivery %s: %v: %s", id, err, body))
			return
		}
		w.bodies[id] = string(body)
		w.delivered = append(w.delivered, b)
	}))
	t.Cleanup(receiver.Close)
	_, secret := mustCreateWebhook(t, f.nodes[0].URL, receiver.URL+"/hooks")
	w.mu.Lock()
	w.secret = secret
	w.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			w.mu.Lock()
			w.stopped = true
			w.mu.Unlock()
		})
	}
	t.Cleanup(w.stop)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.nodes[2].URL+"/v1/events?after=evt_0", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("event stream on node 3: %v %v", resp, err)
	}
	go func() {
		defer close(done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var id string
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				id = "" // an id line without data (the stream's position) ends with its block
			} else if v, ok := strings.CutPrefix(line, "id: "); ok {
				id = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok && id != "" {
				w.mu.Lock()
				w.streamed[id] = v
				w.mu.Unlock()
				id = ""
			}
		}
	}()
	return w
}

// check waits until the last change of each SKU delivered shows the counts that the
// API gives for it, then checks what arrived: every change from evt_1 on, each once
// (duplicates dropped by id), in seq order, every one signed; the event stream of
// another node shows the same documents; and sku, the fleet's first drop, has exactly
// one reservation.held per unit sold.
func (w *fleetChanges) check(t *testing.T, api *client.Client, skus []string, sku string, units int) {
	t.Helper()
	want := make(map[string]*client.SKU)
	for _, id := range skus {
		want[id] = need(api.GetSKU(t.Context(), id))(t)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		w.mu.Lock()
		last := map[string]revguard.ChangeSKU{}
		for _, b := range w.delivered {
			last[b.SKU.ID] = b.SKU
		}
		w.mu.Unlock()
		caught := true
		for id, s := range want {
			l := last[id]
			caught = caught && l.Stock == s.Stock && l.Held == s.Held && l.Sold == s.Sold && l.Available == s.Available
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook's last changes show %+v; the SKUs are %+v", last, want)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.bad) > 0 {
		t.Fatalf("the receiver saw: %v", w.bad)
	}
	held := 0
	for i, b := range w.delivered {
		if b.Seq != uint64(i)+1 {
			t.Fatalf("delivery %d is %s: the webhook missed or reordered changes", i+1, b.ID)
		}
		if b.SKU.ID == sku && b.Type == revguard.ChangeHeld {
			held++
		}
	}
	if held != units {
		t.Fatalf("%d reservation.held changes of %s, want %d", held, sku, units)
	}
	if w.stopped {
		return
	}
	// The stream may lag the webhook by a poll: wait for it to have them all.
	for deadline := time.Now().Add(10 * time.Second); len(w.streamed) < len(w.delivered); {
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		w.mu.Lock()
		if time.Now().After(deadline) {
			t.Fatalf("node 3's event stream has %d changes, the webhook %d", len(w.streamed), len(w.delivered))
		}
	}
	for id, body := range w.bodies {
		if w.streamed[id] != body {
			t.Fatalf("%s: webhook body %s, node 3's event stream %s", id, body, w.streamed[id])
		}
	}
	t.Logf("%d changes delivered to the webhook registered on node 1 and streamed from node 3", len(w.delivered))
}

// leaderIndex returns the index of the live node that leads the change log: its last
// "leading" line comes after its last hand-over. It waits up to 30s for one.
func (f *fleet) leaderIndex(t *testing.T, live []int) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, i := range live {
			log := f.nodes[i].Log.String()
			if l := strings.LastIndex(log, "leading the change log"); l >= 0 && l > strings.LastIndex(log, "handed over") {
				return i
			}
		}
	}
	t.Fatalf("no live node of %v leads the change log", live)
	return -1
}

// dashboardTotals reads node's dashboard stream until a snapshot's decisions since
// start, summed over outcomes, reach want (or 15 snapshots pass), and returns the sum
// it last saw.
func dashboardTotals(t *testing.T, node string, want float64) float64 {
	t.Helper()
	sc := openDashboardStream(t, node)
	var sum float64
	for n := 0; n < 15 && sc.Scan(); {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		n++
		var snap struct{ Totals map[string]float64 }
		if err := json.Unmarshal([]byte(data), &snap); err != nil {
			t.Fatal(err)
		}
		sum = 0
		for _, v := range snap.Totals {
			sum += v
		}
		if sum >= want {
			break
		}
	}
	return sum
}

// openDashboardStream opens the dashboard stream of the server at base with the admin
// token, for at most 30 s and until the test ends, and returns a scanner of its lines.
func openDashboardStream(t *testing.T, base string) *bufio.Scanner {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/dashboard/stream", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	return sc
}
