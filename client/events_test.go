package client_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
)

// TestEvents follows a stream that ends twice: the client reconnects (after the
// server's retry time, 10 ms) from the last event it got (a malformed one included, so that
// it is not read again), yields each interruption and the malformed event as errors
// and a gap as an event, and ends with the problem of an answer that is not a stream.
func TestEvents(t *testing.T) {
	change := func(seq int, typ string) string {
		return fmt.Sprintf("id: evt_%d\nevent: %s\ndata: {\"id\":\"evt_%d\",\"seq\":%d,\"type\":\"%s\",\"created_at\":\"2026-11-27T10:00:00Z\",\n"+
			"data: \"sku\":{\"id\":\"s\",\"stock\":2,\"available\":1,\"held\":1,\"sold\":0}}\n\n", seq, typ, seq, seq, typ)
	}
	var (
		mu   sync.Mutex
		seen []string // each connection's Last-Event-ID and query
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := len(seen)
		seen = append(seen, r.Header.Get("Last-Event-ID")+" "+r.URL.RawQuery)
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("connection %d: Authorization %q", n, r.Header.Get("Authorization"))
		}
		switch n {
		case 0:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "retry: 10\n\n: a comment\n\n"+change(5, "reservation.held")+
				"id: evt_6\nevent: reservation.held\ndata: {\n\n"+
				"event: gap\ndata: {\"after\":\"evt_6\",\"next\":\"evt_9\"}\n\n")
		case 1:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, change(9, "reservation.confirmed"))
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(403)
			fmt.Fprint(w, `{"type":"urn:revguard:problem:forbidden","title":"Forbidden","status":403,"detail":"admin only","code":"forbidden"}`)
		}
	}))
	defer srv.Close()
	c, err := client.New(srv.URL, client.WithToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for ev, err := range c.Events(t.Context(), client.EventsParams{After: "evt_4", Types: []revguard.ChangeType{revguard.ChangeHeld, revguard.ChangeConfirmed}}) {
		switch {
		case client.ErrorCode(err) != "":
			got = append(got, "problem "+string(client.ErrorCode(err)))
		case err != nil:
			got = append(got, "error")
		case ev.Gap != nil:
			got = append(got, "gap "+ev.Gap.After+" "+ev.Gap.Next)
		default:
			if ev.Change.ID != ev.ID || string(ev.Change.Type) != ev.Type || ev.Change.SKU.Held != 1 {
				t.Fatalf("event %+v", ev)
			}
			got = append(got, ev.ID)
		}
	}
	want := "evt_5 error gap evt_6 evt_9 error evt_9 error problem forbidden"
	if strings.Join(got, " ") != want {
		t.Fatalf("yielded %q; want %q", strings.Join(got, " "), want)
	}
	q := "types=reservation.held%2Creservation.confirmed"
	if s := strings.Join(seen, " | "); s != "evt_4 "+q+" | evt_6 "+q+" | evt_9 "+q {
		t.Fatalf("connections (Last-Event-ID and query): %s", s)
	}
}
