package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
	"github.com/revenueguard/revguard/httpapi/openapitest"
	"github.com/revenueguard/revguard/webhook"
)

// TestWebhookCrash registers a webhook endpoint on a real server (the test binary as a
// child process), makes 91 changes, and SIGKILLs the server while the endpoint holds
// the 21st delivery unanswered; restarted on the same data, the server delivers every
// change, in order, each signed, the one in flight again under the same id and body.
func TestWebhookCrash(t *testing.T) {
	dir := t.TempDir()
	srv, err := startChild(crashServeArgs(dir), true)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, srv.Log)
	}
	t.Cleanup(func() {
		if srv != nil {
			srv.kill()
		}
	})

	var (
		mu       sync.Mutex
		secret   string
		order    []string // ids by first arrival
		bodies   = map[string]string{}
		count    = map[string]int{}
		bad      int
		inFlight = make(chan struct{})
		release  = make(chan struct{})
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		id, err := webhook.Verify(secret, r.Header, body, time.Now(), webhook.DefaultTolerance)
		if err != nil {
			bad++
			mu.Unlock()
			w.WriteHeader(400)
			return
		}
		if prev, ok := bodies[id]; ok && prev != string(body) {
			t.Errorf("%s delivered again with another body:\n%s\n%s", id, prev, body)
		}
		if count[id] == 0 {
			order = append(order, id)
		}
		bodies[id] = string(body)
		count[id]++
		hold := len(order) == 21 && count[id] == 1
		mu.Unlock()
		if hold {
			close(inFlight)
			<-release // the server dies meanwhile
		}
	}))
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(receiver.Close)
	t.Cleanup(unblock) // runs before the receiver closes, which waits for its handlers

	hookID, s := mustCreateWebhook(t, srv.URL, receiver.URL+"/revguard")
	mu.Lock()
	secret = s
	mu.Unlock()

	ctx := t.Context()
	admin, err := client.New(srv.URL, client.WithToken(testAdminToken))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutSKU(ctx, "wh-crash", client.SKUSettings{Stock: 100}); err != nil {
		t.Fatal(err)
	}
	const holds, confirms = 60, 30
	for i := range holds {
		sess, err := admin.CreateSession(ctx, client.SessionParams{CustomerID: fmt.Sprintf("c-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		c := admin.WithToken(sess.Token)
		res, err := c.Reserve(ctx, "wh-crash", client.ReserveParams{})
		if err != nil {
			t.Fatal(err)
		}
		if i < confirms {
			if _, err := c.Confirm(ctx, res.ID, client.ConfirmParams{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	const total = 1 + holds + confirms // sku.created, the holds, the confirms

	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatalf("the 21st delivery never came; got %v", order)
	}
	srv.kill()
	unblock()

	srv, err = startChild(crashServeArgs(dir), true)
	if err != nil {
		t.Fatalf("restart: %v\n%s", err, srv.Log)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the endpoint has %d of %d changes\n%s", n, total, srv.Log)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := make([]string, total)
	for i := range want {
		want[i] = revguard.ChangeID(uint64(i + 1))
	}
	if !slices.Equal(order, want) {
		t.Fatalf("first deliveries in the order %v; want %v", order, want)
	}
	if count["evt_21"] < 2 {
		t.Errorf("the change in flight at the kill was delivered %d times; want again after the restart", count["evt_21"])
	}
	if bad > 0 {
		t.Errorf("%d deliveries did not verify", bad)
	}
	// The endpoint's place is stored: its cursor reaches the last change.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var w struct {
			Cursor   uint64
			Failures int
			Status   string
		}
		req, _ := http.NewRequest("GET", srv.URL+"/v1/webhooks/"+hookID, nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		resp, err := (&http.Client{Transport: openapitest.NewTransport(nil)}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&w)
		resp.Body.Close()
		if err == nil && w.Cursor == total && w.Failures == 0 && w.Status == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the endpoint stays at %+v, %v", w, err)
		}
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code := srv.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, srv.Log)
	}
	srv = nil
}
