package main

import (
	"net/http"
	"testing"
	"time"
)

// TestServe_WaitingRoom runs a waiting room on the real server: its own timer admits
// the customers who joined, the admission buys a reservation, and after a restart the
// places are as they were.
func TestServe_WaitingRoom(t *testing.T) { eachMode(t, testServeWaitingRoom) }

func testServeWaitingRoom(t *testing.T, m mode) {
	if m == distributedMode {
		t.Skip("waiting rooms in distributed mode: not yet")
	}
	dir := t.TempDir()
	stores := storeArgs(t, m)
	srv := MustRunServer(t, dir, nil, stores...)
	c := newClient(t, srv.URL, 2)
	var sku skuJSON
	c.must(t, http.StatusCreated, &sku, "PUT", "/v1/skus/drop", testAdminToken, map[string]any{"stock": 1})
	var room map[string]any
	c.must(t, http.StatusCreated, &room, "PUT", "/v1/skus/drop/waiting-room", testAdminToken, map[string]any{"admit_per_second": 100})
	alice, bob := c.mustSession(t, "alice"), c.mustSession(t, "bob")
	type placeJSON struct {
		Status   string `json:"status"`
		Position *int64 `json:"position"`
	}
	var p placeJSON
	c.must(t, http.StatusCreated, &p, "POST", "/v1/skus/drop/waiting-room/place", alice, nil)
	c.must(t, http.StatusCreated, &p, "POST", "/v1/skus/drop/waiting-room/place", bob, nil)
	poll := func(token, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c.must(t, http.StatusOK, &p, "GET", "/v1/skus/drop/waiting-room/place", token, nil)
			if p.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("place %+v, want %s", p, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	poll(alice, "admitted")
	// One unit: bob waits while alice may take it.
	c.must(t, http.StatusOK, &p, "GET", "/v1/skus/drop/waiting-room/place", bob, nil)
	if p.Status != "waiting" || p.Position == nil || *p.Position != 1 {
		t.Fatalf("bob's place %+v, want waiting at 1", p)
	}
	c.mustProblem(t, http.StatusConflict, "admission_required", "POST", "/v1/skus/drop/reservations", bob, nil)
	var res reservationJSON
	c.must(t, http.StatusCreated, &res, "POST", "/v1/skus/drop/reservations", alice, nil)
	poll(alice, "used")
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Log)
	}

	srv = MustRunServer(t, dir, nil, stores...)
	c = newClient(t, srv.URL, 2)
	c.must(t, http.StatusOK, &p, "GET", "/v1/skus/drop/waiting-room/place", alice, nil)
	if p.Status != "used" {
		t.Fatalf("alice's place after a restart: %+v, want used", p)
	}
	// Alice releases her hold: the unit goes to bob, the next in line.
	c.must(t, http.StatusOK, &res, "POST", "/v1/reservations/"+res.ID+"/release", alice, nil)
	poll(bob, "admitted")
	c.must(t, http.StatusCreated, &res, "POST", "/v1/skus/drop/reservations", bob, nil)
}
