package main

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
)

// TestServe_WaitingRoom runs a waiting room on the real server: two customers join its
// pre-queue, the server's own timer draws them at opens_at and admits the first, whose
// admission buys the one unit; after a restart the places are as they were, and the
// unit released goes to the second. revguard export --waiting-room then shows the log
// and reproduces the draw.
func TestServe_WaitingRoom(t *testing.T) { eachMode(t, testServeWaitingRoom) }

func testServeWaitingRoom(t *testing.T, m mode) {
	dir := t.TempDir()
	stores := storeArgs(t, m)
	srv := MustRunServer(t, dir, nil, stores...)
	c := newClient(t, srv.URL, 2)
	var sku skuJSON
	// A quiet room listed before the drop's: copying the audit records must go on past
	// a room that has nothing new (the copy rounds, every second, run during the sale).
	c.must(t, http.StatusCreated, &sku, "PUT", "/v1/skus/a-quiet", testAdminToken, map[string]any{"stock": 1})
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/a-quiet/waiting-room", testAdminToken, map[string]any{"admit_per_second": 1})
	tokens := map[string]string{"alice": c.mustSession(t, "alice"), "bob": c.mustSession(t, "bob")}
	// Both joins must land before opens_at, each after an fsync or a PostgreSQL commit
	// of a race-built server on a busy machine: 3 s ahead.
	opens := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339Nano)
	c.must(t, http.StatusCreated, &sku, "PUT", "/v1/skus/drop", testAdminToken, map[string]any{"stock": 1, "opens_at": opens})
	var room map[string]any
	c.must(t, http.StatusCreated, &room, "PUT", "/v1/skus/drop/waiting-room", testAdminToken, map[string]any{"admit_per_second": 100})
	type placeJSON struct {
		Status   string `json:"status"`
		Position *int64 `json:"position"`
	}
	var p placeJSON
	for _, tok := range tokens {
		c.must(t, http.StatusCreated, &p, "POST", "/v1/skus/drop/waiting-room/place", tok, nil)
		if p.Status != "pre_queue" {
			t.Fatalf("place before opens_at: %+v", p)
		}
	}
	status := func(tok string) string {
		t.Helper()
		c.must(t, http.StatusOK, &p, "GET", "/v1/skus/drop/waiting-room/place", tok, nil)
		return p.Status
	}
	poll := func(tok, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for status(tok) != want {
			if time.Now().After(deadline) {
				t.Fatalf("place %+v, want %s", p, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The draw decides who is first.
	var first, second string
	for deadline := time.Now().Add(10 * time.Second); first == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nobody admitted after opens_at")
		}
		switch {
		case status(tokens["alice"]) == "admitted":
			first, second = tokens["alice"], tokens["bob"]
		case status(tokens["bob"]) == "admitted":
			first, second = tokens["bob"], tokens["alice"]
		}
	}
	// One unit: the second waits while the first may take it.
	if status(second) != "waiting" || p.Position == nil || *p.Position != 1 {
		t.Fatalf("the second's place %+v, want waiting at 1", p)
	}
	c.mustProblem(t, http.StatusConflict, "admission_required", "POST", "/v1/skus/drop/reservations", second, nil)
	var res reservationJSON
	c.must(t, http.StatusCreated, &res, "POST", "/v1/skus/drop/reservations", first, nil)
	poll(first, "used")
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Log)
	}

	if m == distributedMode {
		// The node's shutdown copied the rooms' audit records into the ledger.
		schema := stores[slices.Index(stores, "--postgres-schema")+1]
		db := postgres.NewDB(stores[slices.Index(stores, "--postgres-url")+1])
		db.Schema, db.Logger = schema, slog.New(slog.DiscardHandler)
		if err := db.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		var types []string
		err := postgres.NewRoomLog(db).ReadRoomRecords(t.Context(), "drop", func(r revguard.RoomRecord) error {
			types = append(types, r.Type.String())
			return nil
		})
		db.Close()
		if err != nil || !slices.Contains(types, "drawn") || !slices.Contains(types, "used") {
			t.Fatalf("the ledger's room log: %v, %v; want the draw and the use", types, err)
		}
		// ... and trimmed them from Redis once copied.
		rc, err := redis.Dial(t.Context(), stores[slices.Index(stores, "--redis-url")+1])
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		ns := stores[slices.Index(stores, "--redis-namespace")+1]
		keys, err := rc.Keys(t.Context(), "{"+ns+":*}:rlog:drop").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("room log streams of drop: %v, %v", keys, err)
		}
		if n, err := rc.XLen(t.Context(), keys[0]).Result(); err != nil || n != 0 {
			t.Fatalf("%d records left in Redis after the copy, %v; want none", n, err)
		}
	}

	srv = MustRunServer(t, dir, nil, stores...)
	c = newClient(t, srv.URL, 2)
	if s := status(first); s != "used" {
		t.Fatalf("the first's place after a restart: %s, want used", s)
	}
	// The first releases the hold: the unit goes to the second, next in line.
	c.must(t, http.StatusOK, &res, "POST", "/v1/reservations/"+res.ID+"/release", first, nil)
	poll(second, "admitted")
	c.must(t, http.StatusCreated, &res, "POST", "/v1/skus/drop/reservations", second, nil)

	out, errOut, err := runExport(t, dir, false, append([]string{"--waiting-room", "--sku", "drop"}, stores...)...)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	for _, want := range []string{",room_put,", ",joined,", ",drawn,", ",placed,", ",admitted,", ",used,"} {
		if !strings.Contains(out, want) {
			t.Errorf("export has no %q record:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "draw of drop: 2 customers") || !strings.Contains(errOut, "reproduced") {
		t.Errorf("export stderr %q: want the draw reproduced", errOut)
	}
}
