package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
)

// streamServer answers each connection with serve(n, w, r), n counting from 0, and
// records each connection's Last-Event-ID and query. It is closed at cleanup.
type streamServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newStreamServer(t *testing.T, serve func(n int, w http.ResponseWriter, r *http.Request)) *streamServer {
	s := &streamServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		n := len(s.seen)
		s.seen = append(s.seen, r.Header.Get("Last-Event-ID")+" "+r.URL.RawQuery)
		s.mu.Unlock()
		serve(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// connections returns each connection's Last-Event-ID and query, joined by " | ".
func (s *streamServer) connections() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.seen, " | ")
}

// problem writes a problem document of status and code.
func problem(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"urn:revguard:problem:%s","title":"t","status":%d,"code":"%s"}`, code, status, code)
}

// TestEvents follows a stream through its interruptions: the client reconnects (after
// the server's retry time, or a 503's Retry-After) from the stream's last position,
// which a malformed event and an id without data move too and an id with a NUL does
// not; it yields each interruption and the malformed event as errors and a gap as an
// event, reads CRLF lines, and ends on a 200 that is not an event stream.
func TestEvents(t *testing.T) {
	change := func(seq int, typ, eol string) string {
		return strings.ReplaceAll(fmt.Sprintf("id: evt_%d\nevent: %s\ndata: {\"id\":\"evt_%d\",\"seq\":%d,\"type\":\"%s\",\"created_at\":\"2026-11-27T10:00:00Z\",\n"+
			"data: \"sku\":{\"id\":\"s\",\"stock\":2,\"available\":1,\"held\":1,\"sold\":0}}\n\n", seq, typ, seq, seq, typ), "\n", eol)
	}
	srv := newStreamServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("connection %d: Authorization %q", n, r.Header.Get("Authorization"))
		}
		switch n {
		case 0:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "retry: 10\nid: evt_4\n\n: a comment\n\n"+change(5, "reservation.held", "\n")+
				"id: evt_6\nevent: reservation.held\ndata: {\n\n"+
				"event: gap\ndata: {\"after\":\"evt_6\",\"next\":\"evt_9\"}\n\n"+
				"id: evt_9\n\n") // changes the types leave out
		case 1:
			w.Header().Set("Retry-After", "0")
			problem(w, 503, "unavailable")
		case 2:
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			fmt.Fprint(w, change(10, "reservation.confirmed", "\r\n")+"id: evt_\x0011\n\n")
		default:
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<h1>Welcome to nginx</h1>")
		}
	})
	c, err := client.New(srv.URL, client.WithToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for ev, err := range c.Events(t.Context(), client.EventsParams{After: "evt_4", Types: []revguard.ChangeType{revguard.ChangeHeld, revguard.ChangeConfirmed}}) {
		var malformed *client.MalformedError
		switch {
		case errors.As(err, &malformed):
			got = append(got, "malformed")
		case client.ErrorCode(err) != "":
			got = append(got, "problem "+string(client.ErrorCode(err)))
		case err != nil:
			got = append(got, "error")
		case ev.Gap != nil:
			got = append(got, "gap "+ev.Gap.After+"-"+ev.Gap.Next)
		default:
			if ev.Change.ID != ev.ID || string(ev.Change.Type) != ev.Type || ev.Change.SKU.Held != 1 {
				t.Fatalf("event %+v", ev)
			}
			got = append(got, ev.ID)
		}
	}
	want := "evt_5 error gap evt_6-evt_9 error problem unavailable evt_10 error malformed"
	if strings.Join(got, " ") != want {
		t.Fatalf("yielded %q; want %q", strings.Join(got, " "), want)
	}
	q := "types=reservation.held%2Creservation.confirmed"
	if s := srv.connections(); s != "evt_4 "+q+" | evt_9 "+q+" | evt_9 "+q+" | evt_10 "+q {
		t.Fatalf("connections (Last-Event-ID and query): %s", s)
	}
}

// TestEvents_NoPosition: a stream started without a position takes the one the
// server sends before any event, so that a reconnection misses nothing.
func TestEvents_NoPosition(t *testing.T) {
	srv := newStreamServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n > 0 {
			problem(w, 403, "forbidden")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 300\nid: evt_41\n\n")
	})
	c, _ := client.New(srv.URL)
	var errs []string
	for _, err := range c.Events(t.Context(), client.EventsParams{}) {
		errs = append(errs, string(client.ErrorCode(err)))
	}
	if s := srv.connections(); s != "  | evt_41 " || strings.Join(errs, ",") != ",forbidden" {
		t.Fatalf("connections %q, errors %q; want none then evt_41, and an interruption, then forbidden", s, errs)
	}
}

// TestEvents_Silence: a server that does not answer, or answers and then falls
// silent, is an interruption (reconnected), not a wait without end.
func TestEvents_Silence(t *testing.T) {
	client.SetEventsIdle(t, 200*time.Millisecond)
	release := make(chan struct{})
	srv := newStreamServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		first := n == 0
		if !first { // the second answers, then says nothing
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "retry: 300\nid: evt_7\n\n")
			w.(http.Flusher).Flush()
		}
		select { // the first never answers
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c, _ := client.New(srv.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var errs []error
	for _, err := range c.Events(ctx, client.EventsParams{After: "evt_7"}) {
		if errs = append(errs, err); len(errs) == 2 {
			break
		}
	}
	if len(errs) != 2 || !strings.Contains(fmt.Sprint(errs[0]), "nothing received for 200ms") || !strings.Contains(fmt.Sprint(errs[1]), "nothing received for 200ms") {
		t.Fatalf("errors %v; want two silences (no answer, then no event)", errs)
	}
}

// TestEvents_NoSpin: a 503 with Retry-After 0, again and again, is retried after the
// backoff, not at once: within a second, a handful of connections, not thousands.
func TestEvents_NoSpin(t *testing.T) {
	srv := newStreamServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "0")
		problem(w, 503, "unavailable")
	})
	c, _ := client.New(srv.URL)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	for _, err := range c.Events(ctx, client.EventsParams{}) {
		if client.ErrorCode(err) != revguard.CodeUnavailable {
			t.Fatalf("error %v; want unavailable", err)
		}
	}
	if n := strings.Count(srv.connections(), "|") + 1; n > 10 {
		t.Fatalf("%d connections within a second; want a few (2 s of retry, doubled)", n)
	}
}
