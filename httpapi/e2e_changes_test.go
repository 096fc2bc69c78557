package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
)

// sseEvent is one server-sent event.
type sseEvent struct {
	ID, Event, Data string
}

// openStream sends GET path with token and header, not through the validating
// client (a stream is not a whole answer), and returns the answer, whose body is
// closed at cleanup; ctx bounds it.
func (e *env) openStream(tb testing.TB, ctx context.Context, path, token string, header map[string]string) *http.Response {
	tb.Helper()
	hr, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	hr.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

// stream opens a server-sent event stream and returns its events on a channel, which
// is closed when the stream ends; the stream ends at cleanup.
func (e *env) stream(tb testing.TB, path, token string, header map[string]string) (*http.Response, <-chan sseEvent) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	resp := e.openStream(tb, ctx, path, token, header)
	ch := make(chan sseEvent, 100)
	if resp.StatusCode != 200 {
		close(ch)
		return resp, ch
	}
	// Reads the stream until it ends (at cleanup).
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.Data += line[6:]
			}
		}
	}()
	return resp, ch
}

// next returns the next event of a stream, failing after 10 seconds.
func next(tb testing.TB, ch <-chan sseEvent) sseEvent {
	tb.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			tb.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		tb.Fatal("no event within 10 s")
	}
	return sseEvent{}
}

// TestEvents follows the event stream through a sale: every change in order with its
// counts, sold out and restock derived, a resume after Last-Event-ID, a types filter;
// and refuses bad requests with problem documents.
func TestEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := mustOpenEnv(t, envOptions{backend: b, changes: true})
		resp, all := e.stream(t, "/v1/events?after=evt_0", e.admin, nil)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
			t.Fatalf("stream: %d %s", resp.StatusCode, ct)
		}
		_, soldOut := e.stream(t, "/v1/events?types=sku.sold_out,sku.restocked", e.admin, nil)

		e.putSKU("tee", `{"stock": 1}`)
		tok := e.session("c-1")
		res := e.mustReserve(tok, "tee", "", nil)
		e.putSKU("tee", `{"stock": 3}`)
		if r := e.release(tok, res.ID, ""); r.Status != 200 {
			t.Fatalf("release: %d", r.Status)
		}

		want := []struct {
			typ                    revguard.ChangeType
			available, held, stock int64
		}{
			{revguard.ChangeSKUCreated, 1, 0, 1},
			{revguard.ChangeHeld, 0, 1, 1},
			{revguard.ChangeSKUSoldOut, 0, 1, 1},
			{revguard.ChangeSKURestocked, 2, 1, 3},
			{revguard.ChangeSKUUpdated, 2, 1, 3},
			{revguard.ChangeReleased, 3, 0, 3},
		}
		for i, w := range want {
			ev := next(t, all)
			var body revguard.ChangeBody
			if err := json.Unmarshal([]byte(ev.Data), &body); err != nil {
				t.Fatal(err)
			}
			id := revguard.ChangeID(uint64(i + 1))
			if ev.ID != id || ev.Event != string(w.typ) || body.ID != id || body.Type != w.typ || body.SKU.ID != "tee" ||
				body.SKU.Available != w.available || body.SKU.Held != w.held || body.SKU.Stock != w.stock {
				t.Fatalf("event %d: %+v; want %s %+v", i+1, ev, id, w)
			}
			if (body.Reservation != nil) != strings.HasPrefix(string(w.typ), "reservation.") {
				t.Fatalf("event %d: reservation %+v", i+1, body.Reservation)
			}
			if body.Reservation != nil && (body.Reservation.ID != res.ID || body.Reservation.CustomerID != "c-1") {
				t.Fatalf("event %d: reservation %+v; want %s of c-1", i+1, body.Reservation, res.ID)
			}
		}
		if ev := next(t, soldOut); ev.Event != "sku.sold_out" || ev.ID != "evt_3" {
			t.Fatalf("filtered stream: %+v", ev)
		}
		if ev := next(t, soldOut); ev.Event != "sku.restocked" || ev.ID != "evt_4" {
			t.Fatalf("filtered stream: %+v", ev)
		}

		// A reconnecting client resumes after its Last-Event-ID.
		_, resumed := e.stream(t, "/v1/events", e.admin, map[string]string{"Last-Event-ID": "evt_4"})
		if ev := next(t, resumed); ev.ID != "evt_5" {
			t.Fatalf("resumed at %+v; want evt_5", ev)
		}
		// Without a position, the stream starts with the next change.
		_, fresh := e.stream(t, "/v1/events", e.admin, nil)
		e.putSKU("cap", `{"stock": 2}`)
		if ev := next(t, fresh); ev.ID != "evt_7" || ev.Event != "sku.created" {
			t.Fatalf("fresh stream: %+v", ev)
		}

		for _, tc := range []struct {
			name   string
			path   string
			token  string
			header map[string]string
			status int
			code   revguard.Code
		}{
			{"NoToken", "/v1/events", "", nil, 401, revguard.CodeUnauthenticated},
			{"Customer", "/v1/events", tok, nil, 403, revguard.CodeForbidden},
			{"BadAfter", "/v1/events?after=seven", e.admin, nil, 400, revguard.CodeInvalidRequest},
			{"NegativeAfter", "/v1/events?after=-1", e.admin, nil, 400, revguard.CodeInvalidRequest},
			{"AheadOfTheLog", "/v1/events?after=evt_999", e.admin, nil, 400, revguard.CodeInvalidRequest},
			{"BadLastEventID", "/v1/events", e.admin, map[string]string{"Last-Event-ID": "x"}, 400, revguard.CodeInvalidRequest},
			{"UnknownType", "/v1/events?types=sku.deleted", e.admin, nil, 400, revguard.CodeInvalidRequest},
			{"UnknownParameter", "/v1/events?from=1", e.admin, nil, 400, revguard.CodeInvalidRequest},
			{"TwiceAfter", "/v1/events?after=1&after=2", e.admin, nil, 400, revguard.CodeInvalidRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(req{Method: "GET", Path: tc.path, Token: tc.token, Header: tc.header})
				r.wantProblem(t, tc.status, tc.code)
			})
		}
	})
}

// lagging is a change reader whose newest change, as last polled, stays at zero: a
// distributed node that has not yet polled the log since other nodes appended to it.
type lagging struct{ revguard.ChangeReader }

func (lagging) LastChange() uint64 { return 0 }

// TestEvents_AheadOfThePoll: a node reads where a stream starts from the log itself,
// not from its last poll. A client resuming after a change the poll has not yet
// seen (streamed a moment ago, or by another node) resumes; only a position past
// every change in the log is ahead of it; and a stream without a position starts
// after the log's newest change, not after the poll's.
func TestEvents_AheadOfThePoll(t *testing.T) {
	var log revguard.ChangeReader
	e := mustOpenEnv(t, envOptions{changes: true, edit: func(s *httpapi.Server) {
		log, s.Changes = s.Changes, lagging{s.Changes}
	}})
	e.putSKU("tee", `{"stock": 1}`)
	e.putSKU("tee", `{"stock": 2}`) // sku.restocked and sku.updated
	// The change log follows the journal asynchronously.
	for deadline := time.Now().Add(5 * time.Second); log.LastChange() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log's newest change after 5 s: evt_%d; want evt_3", log.LastChange())
		}
	}
	resp, resumed := e.stream(t, "/v1/events", e.admin, map[string]string{"Last-Event-ID": "evt_2"})
	if resp.StatusCode != 200 {
		t.Fatalf("resume after evt_2: %d; want 200", resp.StatusCode)
	}
	if ev := next(t, resumed); ev.ID != "evt_3" || ev.Event != "sku.updated" {
		t.Fatalf("resumed at %+v; want evt_3 sku.updated", ev)
	}
	e.do(req{Method: "GET", Path: "/v1/events?after=evt_4", Token: e.admin}).wantProblem(t, 400, revguard.CodeInvalidRequest)

	_, fresh := e.stream(t, "/v1/events", e.admin, nil)
	e.putSKU("cap", `{"stock": 2}`)
	if ev := next(t, fresh); ev.ID != "evt_4" || ev.Event != "sku.created" {
		t.Fatalf("fresh stream: %+v; want evt_4 sku.created", ev)
	}
}

// unreadable is a change log that cannot be read (PostgreSQL down, in distributed
// mode), whose last poll saw evt_2.
type unreadable struct{ revguard.ChangeReader }

var errUnreadable = errors.New("the change log is down")

func (unreadable) LastChange() uint64 { return 2 }
func (unreadable) ReadLastChange(context.Context) (uint64, error) {
	return 0, errUnreadable
}
func (unreadable) ReadChanges(context.Context, uint64, int) ([]revguard.Change, error) {
	return nil, errUnreadable
}

// TestEvents_LogDown: while the change log cannot be read, a stream is a 200 that
// ends after its retry line, whatever its position (an EventSource gives up for good
// on an error status, but reconnects to a stream that ended); a position past the
// last poll is not refused as ahead, since the log could not say.
func TestEvents_LogDown(t *testing.T) {
	e := mustOpenEnv(t, envOptions{changes: true, edit: func(s *httpapi.Server) {
		s.Changes = unreadable{s.Changes}
	}})
	for path, pos := range map[string]string{"/v1/events": "evt_2", "/v1/events?after=evt_1": "evt_1", "/v1/events?after=evt_9": "evt_9"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp := e.openStream(t, ctx, path, e.admin, nil)
		body, err := io.ReadAll(resp.Body) // ends, or fails at the timeout
		cancel()
		if want := "retry: 2000\nid: " + pos + "\n\n"; err != nil || resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("%s: %d %q %v; want 200 and only %q", path, resp.StatusCode, body, err, want)
		}
	}
}

// TestEvents_Position: a stream tells its position before any event, and moves it
// past the changes its types leave out, with an id and no data (which sets a
// client's last event id and dispatches nothing): a client that reconnects from it
// misses nothing and reads nothing twice.
func TestEvents_Position(t *testing.T) {
	e := mustOpenEnv(t, envOptions{changes: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rd := bufio.NewReader(e.openStream(t, ctx, "/v1/events?types=sku.sold_out", e.admin, nil).Body)
	block := func() string { // the next block of lines, up to its blank line
		var b strings.Builder
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", b.String(), err)
			}
			if line == "\n" && b.Len() > 0 {
				return b.String()
			}
			b.WriteString(line)
		}
	}
	if got := block(); got != "retry: 2000\nid: evt_0\n" {
		t.Fatalf("first block %q; want the retry and the position evt_0", got)
	}
	e.putSKU("tee", `{"stock": 1}`) // sku.created: left out
	if got := block(); got != "id: evt_1\n" {
		t.Fatalf("after a change left out: %q; want the position evt_1", got)
	}
}

// TestEvents_NoChangeLog: a server without a change log (httpapi.Server with no
// Changes and Webhooks) answers the event stream and the webhooks with not_found.
func TestEvents_NoChangeLog(t *testing.T) {
	e := mustOpenEnv(t, envOptions{})
	for _, r := range []req{
		{Method: "GET", Path: "/v1/events"},
		{Method: "GET", Path: "/v1/webhooks"},
		{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "http://127.0.0.1:1/"}`},
		{Method: "POST", Path: "/v1/webhooks/wh_00000000000000000000/pause"},
	} {
		r.Token = e.admin
		e.do(r).wantProblem(t, 404, revguard.CodeNotFound)
	}
}

// TestWebhooksAPI walks an endpoint's registration: create (the only answer with the
// secret), list, get, pause, resume, delete; and every kind of bad request.
func TestWebhooksAPI(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := mustOpenEnv(t, envOptions{backend: b, changes: true})
		e.putSKU("tee", `{"stock": 1}`)
		var created struct {
			ID, URL, Secret, Status                string
			Types                                  []string
			Cursor                                 uint64
			Failures                               int
			CreatedAt                              string  `json:"created_at"`
			NextAttemptAt, LastSuccessAt, PausedAt *string `json:"-"`
			NextAttempt                            *string `json:"next_attempt_at"`
			LastError                              *string `json:"last_error"`
			LastSuccess                            *string `json:"last_success_at"`
			Paused                                 *string `json:"paused_at"`
		}
		r := e.do(req{Method: "POST", Path: "/v1/webhooks", Token: e.admin,
			Body: `{"url": "https://shop.example/hooks", "types": ["reservation.confirmed", "sku.sold_out", "sku.sold_out"]}`})
		r.json(t, 201, &created)
		if !strings.HasPrefix(created.Secret, "whsec_") || created.Status != "active" || len(created.Types) != 2 ||
			r.Header.Get("Location") != "/v1/webhooks/"+created.ID {
			t.Fatalf("created %+v, Location %q", created, r.Header.Get("Location"))
		}
		if got := r.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("the answer that shows the secret: Cache-Control %q, want no-store", got)
		}
		// It starts at the newest change: the SKU's creation is not delivered.
		for deadline := time.Now().Add(10 * time.Second); created.Cursor < 1; {
			e.do(req{Method: "DELETE", Path: "/v1/webhooks/" + created.ID, Token: e.admin})
			r = e.do(req{Method: "POST", Path: "/v1/webhooks", Token: e.admin, Body: `{"url": "https://shop.example/hooks"}`})
			r.json(t, 201, &created)
			if time.Now().After(deadline) {
				t.Fatal("the change log never got the SKU's creation")
			}
		}
		id := created.ID
		var list struct{ Items []map[string]any }
		e.do(req{Method: "GET", Path: "/v1/webhooks", Token: e.admin}).json(t, 200, &list)
		if len(list.Items) != 1 || list.Items[0]["id"] != id || list.Items[0]["secret"] != nil {
			t.Fatalf("list %+v", list)
		}
		var got map[string]any
		e.do(req{Method: "GET", Path: "/v1/webhooks/" + id, Token: e.admin}).json(t, 200, &got)
		if got["url"] != "https://shop.example/hooks" || got["secret"] != nil {
			t.Fatalf("get %+v", got)
		}
		e.do(req{Method: "POST", Path: "/v1/webhooks/" + id + "/pause", Token: e.admin}).json(t, 200, &got)
		if got["status"] != "paused" || got["paused_at"] == nil {
			t.Fatalf("paused %+v", got)
		}
		e.do(req{Method: "POST", Path: "/v1/webhooks/" + id + "/resume", Token: e.admin, Body: `{}`}).json(t, 200, &got)
		if got["status"] != "active" || got["paused_at"] != nil {
			t.Fatalf("resumed %+v", got)
		}
		e.do(req{Method: "DELETE", Path: "/v1/webhooks/" + id, Token: e.admin, Body: `{"force":true}`}).wantProblem(t, 400, revguard.CodeInvalidRequest)
		if r := e.do(req{Method: "DELETE", Path: "/v1/webhooks/" + id, Token: e.admin}); r.Status != 204 {
			t.Fatalf("delete: %d", r.Status)
		}
		e.do(req{Method: "GET", Path: "/v1/webhooks/" + id, Token: e.admin}).wantProblem(t, 404, revguard.CodeWebhookNotFound)
		e.do(req{Method: "DELETE", Path: "/v1/webhooks/" + id, Token: e.admin}).wantProblem(t, 404, revguard.CodeWebhookNotFound)

		customer := e.session("c-1")
		for _, tc := range []struct {
			name   string
			r      req
			status int
			code   revguard.Code
		}{
			{"NoURL", req{Method: "POST", Path: "/v1/webhooks", Body: `{"types": []}`}, 400, revguard.CodeInvalidRequest},
			{"EmptyBody", req{Method: "POST", Path: "/v1/webhooks"}, 400, revguard.CodeInvalidRequest},
			{"NotHTTP", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "ftp://shop.example/"}`}, 400, revguard.CodeInvalidRequest},
			{"Relative", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "/hooks"}`}, 400, revguard.CodeInvalidRequest},
			{"Credentials", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://a:b@shop.example/"}`}, 400, revguard.CodeInvalidRequest},
			{"PortTooHigh", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "http://127.0.0.1:99999/ok"}`}, 400, revguard.CodeInvalidRequest},
			{"PortZero", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "http://127.0.0.1:0/ok"}`}, 400, revguard.CodeInvalidRequest},
			{"PortEmpty", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "http://127.0.0.1:/ok"}`}, 400, revguard.CodeInvalidRequest},
			{"FragmentEmpty", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/ok#"}`}, 400, revguard.CodeInvalidRequest},
			{"NoHostname", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "http://:8080/ok"}`}, 400, revguard.CodeInvalidRequest},
			{"Space", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/ok a"}`}, 400, revguard.CodeInvalidRequest},
			{"NotASCII", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/caf\u00e9"}`}, 400, revguard.CodeInvalidRequest},
			{"UnknownType", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/", "types": ["sku.deleted"]}`}, 400, revguard.CodeInvalidRequest},
			{"TypesNotArray", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/", "types": "sku.sold_out"}`}, 400, revguard.CodeInvalidRequest},
			{"BadSecret", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/", "secret": "hunter2"}`}, 400, revguard.CodeInvalidRequest},
			{"ShortSecret", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/", "secret": "whsec_c2hvcnQ="}`}, 400, revguard.CodeInvalidRequest},
			{"UnknownField", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/", "events": []}`}, 400, revguard.CodeInvalidRequest},
			{"Trailing", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/"} x`}, 400, revguard.CodeInvalidRequest},
			{"TextBody", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/"}`, Header: map[string]string{"Content-Type": "text/plain"}}, 415, revguard.CodeUnsupportedMediaType},
			{"Huge", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/` + strings.Repeat("a", 70000) + `"}`}, 413, revguard.CodeBodyTooLarge},
			{"LongURL", req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/` + strings.Repeat("a", 3000) + `"}`}, 400, revguard.CodeInvalidRequest},
			{"ListQuery", req{Method: "GET", Path: "/v1/webhooks?limit=1"}, 400, revguard.CodeInvalidRequest},
			{"BadID", req{Method: "GET", Path: "/v1/webhooks/wh_xyz"}, 404, revguard.CodeWebhookNotFound},
			{"UnknownID", req{Method: "POST", Path: "/v1/webhooks/wh_0123456789abcdef0123/resume"}, 404, revguard.CodeWebhookNotFound},
			{"PauseWithBody", req{Method: "POST", Path: "/v1/webhooks/wh_0123456789abcdef0123/pause", Body: `{"now": true}`}, 400, revguard.CodeInvalidRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.r.Token = e.admin
				e.do(tc.r).wantProblem(t, tc.status, tc.code)
			})
		}
		e.do(req{Method: "GET", Path: "/v1/webhooks", Token: customer}).wantProblem(t, 403, revguard.CodeForbidden)
		e.do(req{Method: "POST", Path: "/v1/webhooks", Body: `{"url": "https://shop.example/"}`}).wantProblem(t, 401, revguard.CodeUnauthenticated)

		// At most MaxWebhooks endpoints; a refused one changes nothing.
		for i := range revguard.MaxWebhooks {
			e.do(req{Method: "POST", Path: "/v1/webhooks", Token: e.admin, Body: fmt.Sprintf(`{"url": "https://shop.example/%d"}`, i)}).json(t, 201, &created)
		}
		e.do(req{Method: "POST", Path: "/v1/webhooks", Token: e.admin, Body: `{"url": "https://shop.example/one-more"}`}).wantProblem(t, 400, revguard.CodeInvalidRequest)
		e.do(req{Method: "GET", Path: "/v1/webhooks", Token: e.admin}).json(t, 200, &list)
		if len(list.Items) != revguard.MaxWebhooks {
			t.Fatalf("%d endpoints; want %d", len(list.Items), revguard.MaxWebhooks)
		}
	})
}

// TestDashboardStream: the page is served; its stream takes the admin token or an
// unexpired link token (which opens nothing else) and sends snapshots with the SKUs'
// counts and the decisions by outcome.
func TestDashboardStream(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := mustOpenEnv(t, envOptions{backend: b, changes: true})
		page := e.do(req{Method: "GET", Path: "/dashboard/"})
		if page.Status != 200 || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(page.Header.Get("Content-Security-Policy"), "connect-src 'self'") {
			t.Fatalf("page: %d %v", page.Status, page.Header)
		}
		if r := e.do(req{Method: "GET", Path: "/dashboard/app.js"}); r.Status != 200 {
			t.Fatalf("script: %d", r.Status)
		}
		e.do(req{Method: "GET", Path: "/dashboard/secrets.txt"}).wantProblem(t, 404, revguard.CodeNotFound)

		e.putSKU("tee", `{"stock": 2}`)
		e.mustReserve(e.session("c-1"), "tee", "", nil)
		link := e.api.DashboardToken(time.Now().Add(time.Minute))
		for _, token := range []string{e.admin, link} {
			_, ch := e.stream(t, "/v1/dashboard/stream", token, nil)
			for {
				ev := next(t, ch)
				var snap struct {
					SKUs []struct {
						SKU                          string
						Stock, Available, Held, Sold int64
					}
					Totals map[string]float64
					Nodes  []struct{ Ready bool }
				}
				if ev.Event != "snapshot" || json.Unmarshal([]byte(ev.Data), &snap) != nil {
					t.Fatalf("event %+v", ev)
				}
				if len(snap.SKUs) == 1 && snap.SKUs[0].Held == 1 && snap.SKUs[0].Available == 1 && snap.Totals["reserved"] == 1 && len(snap.Nodes) == 1 {
					break
				}
			}
		}
		expired := e.api.DashboardToken(time.Now().Add(-time.Second))
		forged := link[:len(link)-4] + "AAAA"
		for _, tc := range []struct {
			name, path, token string
			status            int
			code              revguard.Code
		}{
			{"Expired", "/v1/dashboard/stream", expired, 401, revguard.CodeUnauthenticated},
			{"Forged", "/v1/dashboard/stream", forged, 401, revguard.CodeUnauthenticated},
			{"Customer", "/v1/dashboard/stream", e.session("c-2"), 403, revguard.CodeForbidden},
			{"Query", "/v1/dashboard/stream?sku=tee", e.admin, 400, revguard.CodeInvalidRequest},
			// The wrong kind of token elsewhere (403); expired, no token at all (401).
			{"LinkOpensNothingElse", "/v1/orders", link, 403, revguard.CodeForbidden},
			{"LinkOpensNoEvents", "/v1/events", link, 403, revguard.CodeForbidden},
			{"LinkIsNoCustomer", "/v1/me/reservations", link, 403, revguard.CodeForbidden},
			{"ExpiredLinkElsewhere", "/v1/orders", expired, 401, revguard.CodeUnauthenticated},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.do(req{Method: "GET", Path: tc.path, Token: tc.token}).wantProblem(t, tc.status, tc.code)
			})
		}
		// The reserve lane answers it as the general path does.
		r := e.reserve(link, "tee", "", nil)
		r.wantProblem(t, 403, revguard.CodeForbidden)
		if !strings.Contains(r.Header.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("403 to a dashboard link's token: WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
		}
	})
}

// TestDashboardStream_WaitingRoom: a SKU with a waiting room shows its size on the
// dashboard; a SKU without one shows none.
func TestDashboardStream_WaitingRoom(t *testing.T) {
	e := mustOpenEnv(t, envOptions{changes: true})
	e.putSKU("tee", `{"stock": 2}`)
	e.putSKU("shoe", `{"stock": 5}`)
	if r := e.putRoom("shoe", `{"admit_per_second": 1}`); r.Status != 201 {
		t.Fatalf("put room: %d %s", r.Status, r.Body)
	}
	for _, c := range []string{"c-1", "c-2", "c-3"} {
		if r := e.join(e.session(c), "shoe", nil); r.Status != 201 {
			t.Fatalf("join %s: %d %s", c, r.Status, r.Body)
		}
	}
	_, ch := e.stream(t, "/v1/dashboard/stream", e.admin, nil)
	for n := 0; ; n++ {
		if n == 200 {
			t.Fatal("200 snapshots without the waiting room's three customers")
		}
		ev := next(t, ch)
		var snap struct {
			SKUs []struct {
				SKU  string
				Room *struct {
					Waiting, Admitted, Used int64
					SoldOut                 bool `json:"sold_out"`
				} `json:"waiting_room"`
			}
		}
		if ev.Event != "snapshot" || json.Unmarshal([]byte(ev.Data), &snap) != nil {
			t.Fatalf("event %+v", ev)
		}
		if len(snap.SKUs) != 2 || snap.SKUs[0].SKU != "shoe" || snap.SKUs[1].SKU != "tee" {
			t.Fatalf("skus %+v", snap.SKUs)
		}
		if snap.SKUs[1].Room != nil {
			t.Fatalf("tee has no waiting room, the dashboard shows %+v", *snap.SKUs[1].Room)
		}
		if r := snap.SKUs[0].Room; r != nil && r.Waiting+r.Admitted == 3 && r.Used == 0 && !r.SoldOut {
			break
		}
	}
}

// TestStreams_Head checks that a HEAD of each event stream is its headers alone: the
// answer ends (the connection is closed, as a stream's answer says), instead of
// holding the connection open with nothing to come.
func TestStreams_Head(t *testing.T) {
	e := mustOpenRoomEnv(t, envOptions{changes: true})
	e.putSKU("shoe", `{"stock":3}`)
	e.putRoom("shoe", `{"admit_per_second":5}`).json(t, 201, &waitingRoom{})
	alice := e.session("alice")
	e.join(alice, "shoe", e.tokenHeader()).json(t, 201, &place{})
	for _, tc := range []struct{ path, token string }{
		{"/v1/events", e.admin},
		{"/v1/dashboard/stream", e.admin},
		{"/v1/skus/shoe/waiting-room/place/events", alice},
	} {
		conn := e.srv.dial(t)
		fmt.Fprintf(conn, "HEAD %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", tc.path, tc.token)
		answer, err := io.ReadAll(conn) // until the server closes: the 10 s deadline fails it
		if err != nil {
			t.Errorf("HEAD %s: %v after %q", tc.path, err, answer)
			continue
		}
		head, body, _ := strings.Cut(string(answer), "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200") || !strings.Contains(head, "text/event-stream") || body != "" {
			t.Errorf("HEAD %s: %q", tc.path, answer)
		}
	}
}

// TestDashboardStream_LinkExpires checks that a stream opened with a dashboard link's
// token ends when the token expires, and that one opened with the admin token goes on.
func TestDashboardStream_LinkExpires(t *testing.T) {
	e := mustOpenEnv(t, envOptions{changes: true, clock: true})
	link := e.api.DashboardToken(e.clock.Now().Add(time.Minute))
	_, linked := e.stream(t, "/v1/dashboard/stream", link, nil)
	_, admin := e.stream(t, "/v1/dashboard/stream", e.admin, nil)
	next(t, linked)
	next(t, linked) // it goes on while the token is valid
	e.clock.Advance(time.Minute)
	deadline := time.After(10 * time.Second)
	for ended := false; !ended; {
		select {
		case _, ok := <-linked:
			ended = !ok
		case <-deadline:
			t.Fatal("the stream of a link's token goes on 10 s after the token expired")
		}
	}
	for len(admin) > 0 { // what the admin's stream sent meanwhile
		<-admin
	}
	next(t, admin) // and it goes on
}
