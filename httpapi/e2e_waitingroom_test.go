package httpapi_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
)

// The waiting room end to end: the admin's settings, joining with the bot check, the
// pre-queue and its draw, polling and the event stream, and the admission that a
// reservation of the SKU needs.

// place is the place object.
type place struct {
	SKU           string  `json:"sku"`
	CustomerID    string  `json:"customer_id"`
	Status        string  `json:"status"`
	Position      *int64  `json:"position"`
	EstimatedWait *int64  `json:"estimated_wait_seconds"`
	JoinedAt      string  `json:"joined_at"`
	OpensAt       *string `json:"opens_at"`
	AdmittedAt    *string `json:"admitted_at"`
	AdmittedUntil *string `json:"admitted_until"`
}

// waitingRoom is the waiting room object.
type waitingRoom struct {
	SKU              string `json:"sku"`
	PreQueueSeconds  int64  `json:"pre_queue_seconds"`
	AdmitPerSecond   int64  `json:"admit_per_second"`
	AdmissionSeconds *int64 `json:"admission_seconds"`
	Joined           int64  `json:"joined"`
	PreQueue         int64  `json:"pre_queue"`
	Waiting          int64  `json:"waiting"`
	Admitted         int64  `json:"admitted"`
	Used             int64  `json:"used"`
	SoldOut          bool   `json:"sold_out"`
	Draw             *struct {
		Seed    string `json:"seed"`
		DrawnAt string `json:"drawn_at"`
		Size    int64  `json:"size"`
	} `json:"draw"`
}

func (e *env) putRoom(sku, body string) *response {
	e.tb.Helper()
	return e.do(req{Method: "PUT", Path: "/v1/skus/" + sku + "/waiting-room", Token: e.admin, Body: body})
}

func (e *env) getRoom(sku string) waitingRoom {
	e.tb.Helper()
	var r waitingRoom
	e.do(req{Method: "GET", Path: "/v1/skus/" + sku + "/waiting-room", Token: e.admin}).json(e.tb, 200, &r)
	return r
}

func (e *env) join(token, sku string, hdr map[string]string) *response {
	e.tb.Helper()
	return e.do(req{Method: "POST", Path: "/v1/skus/" + sku + "/waiting-room/place", Token: token, Header: hdr})
}

func (e *env) getPlace(token, sku string) place {
	e.tb.Helper()
	var p place
	r := e.do(req{Method: "GET", Path: "/v1/skus/" + sku + "/waiting-room/place", Token: token})
	r.json(e.tb, 200, &p)
	if r.Header.Get("Cache-Control") != "no-store" {
		e.tb.Fatalf("GET place: Cache-Control %q, want no-store", r.Header.Get("Cache-Control"))
	}
	return p
}

func (e *env) advance(sku string) {
	e.tb.Helper()
	if err := e.room.Advance(e.tb.Context(), sku); err != nil {
		e.tb.Fatalf("Advance(%s): %v", sku, err)
	}
}

// mustOpenRoomEnv opens an env with a clock and the bot check (and the rest of o),
// skipping a backend without waiting rooms.
func mustOpenRoomEnv(t *testing.T, o envOptions) *env {
	o.botCheck, o.clock = true, true
	e := mustOpenEnv(t, o)
	if e.room == nil {
		t.Skipf("the %s backend has no waiting room", o.backend)
	}
	return e
}

func TestWaitingRoomAdmin(t *testing.T) { eachBackend(t, testWaitingRoomAdmin) }

func testWaitingRoomAdmin(t *testing.T, b backend) {
	e := mustOpenRoomEnv(t, envOptions{backend: b})
	e.putSKU("shoe", `{"stock":3}`)
	alice := e.session("alice")

	e.putRoom("nope", `{"admit_per_second":5}`).wantProblem(t, 404, revguard.CodeSKUNotFound)
	for _, body := range []string{``, `{}`, `{"admit_per_second":0}`, `{"admit_per_second":5,"admission_seconds":0}`,
		`{"admit_per_second":5,"pre_queue_seconds":-1}`, `{"admit_per_second":"5"}`, `{"admit_per_second":5,"x":1}`,
		`{"admit_per_second":5}{}`, `{"admit_per_second":5,"admit_per_second":5}`, `{"admit_per_second":1000001}`} {
		e.putRoom("shoe", body).wantProblem(t, 400, revguard.CodeInvalidRequest)
	}
	e.do(req{Method: "GET", Path: "/v1/skus/shoe/waiting-room", Token: e.admin}).wantProblem(t, 404, revguard.CodeWaitingRoomNotFound)
	e.do(req{Method: "PUT", Path: "/v1/skus/shoe/waiting-room", Token: alice, Body: `{"admit_per_second":5}`}).wantProblem(t, 403, revguard.CodeForbidden)
	e.do(req{Method: "PUT", Path: "/v1/skus/bad%20id/waiting-room", Token: e.admin, Body: `{"admit_per_second":5}`}).wantProblem(t, 400, revguard.CodeInvalidSKU)

	r := e.putRoom("shoe", `{"admit_per_second":5,"pre_queue_seconds":120,"admission_seconds":60}`)
	var got waitingRoom
	r.json(t, 201, &got)
	if r.Header.Get("Location") != "/v1/skus/shoe/waiting-room" {
		t.Fatalf("Location %q", r.Header.Get("Location"))
	}
	if got.SKU != "shoe" || got.AdmitPerSecond != 5 || got.PreQueueSeconds != 120 || got.AdmissionSeconds == nil || *got.AdmissionSeconds != 60 || got.Draw != nil {
		t.Fatalf("room %+v", got)
	}
	e.putRoom("shoe", `{"admit_per_second":7}`).json(t, 200, &got)
	if got.AdmitPerSecond != 7 || got.PreQueueSeconds != revguard.DefaultPreQueueSeconds || got.AdmissionSeconds != nil {
		t.Fatalf("room after a second PUT %+v, want the defaults back", got)
	}
	if g := e.getRoom("shoe"); g.AdmitPerSecond != 7 {
		t.Fatalf("GET room %+v", g)
	}

	// With the room on, reserving needs an admission; turned off, it does not.
	e.reserve(alice, "shoe", ``, e.tokenHeader()).wantProblem(t, 409, revguard.CodeAdmissionRequired)
	// A body other than none or {} is refused, and the room stays.
	e.do(req{Method: "DELETE", Path: "/v1/skus/shoe/waiting-room", Token: e.admin, Body: `off`,
		Header: map[string]string{"Content-Type": "text/plain"}}).wantProblem(t, 415, revguard.CodeUnsupportedMediaType)
	e.do(req{Method: "DELETE", Path: "/v1/skus/shoe/waiting-room", Token: e.admin, Body: `{"now":true}`}).wantProblem(t, 400, revguard.CodeInvalidRequest)
	if r := e.do(req{Method: "DELETE", Path: "/v1/skus/shoe/waiting-room", Token: e.admin, Body: `{}`}); r.Status != 204 {
		t.Fatalf("DELETE room: %d %s", r.Status, r.Body)
	}
	e.do(req{Method: "DELETE", Path: "/v1/skus/shoe/waiting-room", Token: e.admin}).wantProblem(t, 404, revguard.CodeWaitingRoomNotFound)
	e.join(alice, "shoe", e.tokenHeader()).wantProblem(t, 404, revguard.CodeWaitingRoomNotFound)
	e.mustReserve(alice, "shoe", ``, e.tokenHeader())
}

func TestWaitingRoomDraw(t *testing.T) { eachBackend(t, testWaitingRoomDraw) }

func testWaitingRoomDraw(t *testing.T, b backend) {
	e := mustOpenRoomEnv(t, envOptions{backend: b})
	// The clock is at 09:00; the sale opens at 09:30, the pre-queue 10 minutes before.
	e.putSKU("shoe", `{"stock":2,"opens_at":"2026-11-27T09:30:00Z"}`)
	e.putRoom("shoe", `{"admit_per_second":1,"pre_queue_seconds":600}`).json(t, 201, &waitingRoom{})
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	tokens := map[string]string{}
	for _, n := range names {
		tokens[n] = e.session(n)
	}
	alice := tokens["alice"]

	calls := e.verifier.Calls()
	e.join(alice, "shoe", e.tokenHeader()).wantProblem(t, 409, revguard.CodeSaleNotOpen)
	if e.verifier.Calls() != calls {
		t.Fatal("a join before the pre-queue opens spent a bot check")
	}
	e.do(req{Method: "GET", Path: "/v1/skus/shoe/waiting-room/place", Token: alice}).wantProblem(t, 404, revguard.CodePlaceNotFound)
	e.clock.Set(time.Date(2026, 11, 27, 9, 20, 0, 0, time.UTC))

	// Joining needs a bot check, the customer's own session, and the room.
	e.join(alice, "shoe", nil).wantProblem(t, 403, revguard.CodeBotCheckFailed)
	e.join(e.admin, "shoe", e.tokenHeader()).wantProblem(t, 403, revguard.CodeForbidden)
	e.join("", "shoe", e.tokenHeader()).wantProblem(t, 401, revguard.CodeUnauthenticated)
	e.putSKU("boot", `{"stock":2}`)
	e.join(alice, "boot", e.tokenHeader()).wantProblem(t, 404, revguard.CodeWaitingRoomNotFound)
	e.do(req{Method: "POST", Path: "/v1/skus/shoe/waiting-room/place", Token: alice, Body: `{"quantity":1}`}).wantProblem(t, 400, revguard.CodeInvalidRequest)

	for i, n := range names[:5] {
		var p place
		hdr := e.tokenHeader()
		if i == 1 {
			hdr = nil // in the body instead
		}
		body := ``
		if hdr == nil {
			body = `{"turnstile_token":"` + e.verifier.Token() + `"}`
		}
		e.do(req{Method: "POST", Path: "/v1/skus/shoe/waiting-room/place", Token: tokens[n], Header: hdr, Body: body}).json(t, 201, &p)
		if p.Status != "pre_queue" || p.Position != nil || p.CustomerID != n || p.OpensAt == nil || *p.OpensAt != "2026-11-27T09:30:00Z" {
			t.Fatalf("place of %s: %+v", n, p)
		}
		if i == 0 {
			golden(t, "place_pre_queue", e.join(tokens[n], "shoe", nil).Body) // a second join: 200, no bot check
		}
		e.clock.Advance(time.Second)
	}
	e.join(alice, "shoe", nil).json(t, 200, &place{})
	// Before the sale opens, a reservation is refused for that reason first.
	e.reserve(alice, "shoe", ``, e.tokenHeader()).wantProblem(t, 409, revguard.CodeSaleNotOpen)

	e.clock.Set(time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC))
	e.advance("shoe")
	room := e.getRoom("shoe")
	if room.Draw == nil || room.Draw.Size != 5 || room.Draw.DrawnAt != "2026-11-27T09:30:00Z" || room.Joined != 5 || room.Admitted != 1 || room.Waiting != 4 {
		t.Fatalf("room after the draw: %+v", room)
	}
	seed, err := hex.DecodeString(room.Draw.Seed)
	if err != nil {
		t.Fatal(err)
	}
	order := revguard.DrawOrder(seed, names[:5])
	first := tokens[order[0]]
	if p := e.getPlace(first, "shoe"); p.Status != "admitted" || p.AdmittedUntil == nil || *p.AdmittedUntil != "2026-11-27T09:40:00Z" {
		t.Fatalf("the draw's first: %+v, want admitted until 09:40 (the hold time)", p)
	}
	for i, n := range order[1:] {
		p := e.getPlace(tokens[n], "shoe")
		if p.Status != "waiting" || p.Position == nil || *p.Position != int64(i+1) || p.EstimatedWait == nil || *p.EstimatedWait != int64(i+1) {
			t.Fatalf("place of %s: %+v, want waiting at %d", n, p, i+1)
		}
	}
	// A late joiner queues behind the draw.
	var late place
	e.join(tokens["frank"], "shoe", e.tokenHeader()).json(t, 201, &late)
	if late.Status != "waiting" || late.Position == nil || *late.Position != 5 {
		t.Fatalf("late joiner: %+v, want waiting at 5", late)
	}

	// The admitted customer reserves once; the others must wait their turn.
	second := tokens[order[1]]
	e.reserve(second, "shoe", ``, e.tokenHeader()).wantProblem(t, 409, revguard.CodeAdmissionRequired)
	res := e.mustReserve(first, "shoe", ``, e.tokenHeader())
	e.reserve(first, "shoe", ``, e.tokenHeader()).wantProblem(t, 409, revguard.CodeAdmissionRequired)
	if p := e.getPlace(first, "shoe"); p.Status != "used" {
		t.Fatalf("place after the reservation: %+v, want used", p)
	}
	e.clock.Advance(time.Second)
	e.advance("shoe")
	if p := e.getPlace(second, "shoe"); p.Status != "admitted" {
		t.Fatalf("the draw's second after a second: %+v, want admitted", p)
	}
	// The second buys the last unit; confirmed both, the room closes.
	res2 := e.mustReserve(second, "shoe", ``, e.tokenHeader())
	e.confirm(first, res.ID, ``).json(t, 200, &reservation{})
	e.confirm(second, res2.ID, ``).json(t, 200, &reservation{})
	e.clock.Advance(time.Second)
	e.advance("shoe")
	if p := e.getPlace(tokens[order[2]], "shoe"); p.Status != "sold_out" || p.Position != nil {
		t.Fatalf("a waiting place once sold out: %+v", p)
	}
	calls = e.verifier.Calls()
	e.join(e.session("gina"), "shoe", e.tokenHeader()).wantProblem(t, 409, revguard.CodeSoldOut)
	if e.verifier.Calls() != calls {
		t.Fatal("a join of a closed room spent a bot check")
	}
	if r := e.getRoom("shoe"); !r.SoldOut || r.Used != 2 {
		t.Fatalf("room once sold out: %+v", r)
	}
}

func TestWaitingRoomCustomerLimit(t *testing.T) { eachBackend(t, testWaitingRoomCustomerLimit) }

// testWaitingRoomCustomerLimit: the customer's rate limit counts reserve, confirm and
// release (docs/api.md), not the room: with 2 a minute, reserve (409 admission_required),
// join, join again, poll, then reserve once admitted is within the limit. Joins have a
// bucket of their own at the same rate.
func testWaitingRoomCustomerLimit(t *testing.T, b backend) {
	e := mustOpenRoomEnv(t, envOptions{backend: b, customerRate: revguard.Rate{N: 2, Per: time.Minute}})
	e.putSKU("shoe", `{"stock":5}`)
	e.putRoom("shoe", `{"admit_per_second":1}`).json(t, 201, &waitingRoom{})
	alice := e.session("alice")
	e.reserve(alice, "shoe", ``, e.tokenHeader()).wantProblem(t, 409, revguard.CodeAdmissionRequired)
	e.join(alice, "shoe", e.tokenHeader()).json(t, 201, &place{})
	e.join(alice, "shoe", nil).json(t, 200, &place{})
	e.join(alice, "shoe", nil).wantProblem(t, 429, revguard.CodeRateLimited)
	e.advance("shoe")
	if p := e.getPlace(alice, "shoe"); p.Status != "admitted" {
		t.Fatalf("place %+v, want admitted", p)
	}
	e.mustReserve(alice, "shoe", ``, e.tokenHeader())
	// The limit is still there for what it counts.
	e.reserve(alice, "shoe", ``, e.tokenHeader()).wantProblem(t, 429, revguard.CodeRateLimited)
}

func TestWaitingRoomEvents(t *testing.T) { eachBackend(t, testWaitingRoomEvents) }

func testWaitingRoomEvents(t *testing.T, b backend) {
	e := mustOpenRoomEnv(t, envOptions{backend: b, edit: func(s *httpapi.Server) { s.PlaceStreamEvery = 5 * time.Millisecond }})
	e.putSKU("shoe", `{"stock":5}`)
	e.putRoom("shoe", `{"admit_per_second":1}`).json(t, 201, &waitingRoom{})
	alice, bob := e.session("alice"), e.session("bob")
	e.do(req{Method: "GET", Path: "/v1/skus/shoe/waiting-room/place/events", Token: alice}).wantProblem(t, 404, revguard.CodePlaceNotFound)
	e.join(alice, "shoe", e.tokenHeader()).json(t, 201, &place{})
	e.join(bob, "shoe", e.tokenHeader()).json(t, 201, &place{})

	resp := openPlaceStream(t, e, t.Context(), bob, "shoe")
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan place)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var p place
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Errorf("event data %q: %v", line, err)
				return
			}
			events <- p
		}
	}()
	next := func() place {
		t.Helper()
		p, ok := <-events
		if !ok {
			t.Fatal("the stream ended early")
		}
		return p
	}
	if p := next(); p.Status != "waiting" || *p.Position != 2 {
		t.Fatalf("first event: %+v, want waiting at 2", p)
	}
	e.advance("shoe") // alice admitted: bob is next
	if p := next(); p.Status != "waiting" || *p.Position != 1 {
		t.Fatalf("second event: %+v, want waiting at 1", p)
	}
	e.clock.Advance(time.Second)
	e.advance("shoe")
	if p := next(); p.Status != "admitted" {
		t.Fatalf("third event: %+v, want admitted", p)
	}
	e.mustReserve(bob, "shoe", ``, e.tokenHeader())
	var statuses []string
	for p := range events {
		statuses = append(statuses, p.Status)
	}
	if !slices.Equal(statuses, []string{"used"}) {
		t.Fatalf("events after the reservation: %v, want [used] then the end of the stream", statuses)
	}
}

// openPlaceStream opens the place stream of token's customer in sku's room, until ctx
// ends. A plain client: the validating one reads each answer whole, and a stream ends
// only with the place.
func openPlaceStream(t *testing.T, e *env, ctx context.Context, token, sku string) *http.Response {
	t.Helper()
	hr, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/skus/"+sku+"/waiting-room/place/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{}).Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestWaitingRoomEventsShutdown checks that CloseStreams ends an open place stream, so
// that a graceful shutdown does not wait for it.
func TestWaitingRoomEventsShutdown(t *testing.T) {
	e := mustOpenRoomEnv(t, envOptions{backend: embedded, edit: func(s *httpapi.Server) { s.PlaceStreamEvery = 5 * time.Millisecond }})
	e.putSKU("shoe", `{"stock":5}`)
	e.putRoom("shoe", `{"admit_per_second":1}`).json(t, 201, &waitingRoom{})
	alice := e.session("alice")
	e.join(alice, "shoe", e.tokenHeader()).json(t, 201, &place{})
	resp := openPlaceStream(t, e, t.Context(), alice, "shoe")
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "event: place") {
		t.Fatalf("first line %q, want an event", sc.Text())
	}
	e.api.CloseStreams()
	for sc.Scan() { // the stream must end: a hang fails the test by its timeout
	}
}

// TestWaitingRoomEventsPerCustomer: one customer opens at most MaxPlaceStreams place
// streams at once; the next is 429 rate_limited with Retry-After, and once one ends
// another opens. Another customer is not counted with the first.
func TestWaitingRoomEventsPerCustomer(t *testing.T) {
	e := mustOpenRoomEnv(t, envOptions{backend: embedded, edit: func(s *httpapi.Server) { s.PlaceStreamEvery = 5 * time.Millisecond }})
	e.putSKU("shoe", `{"stock":5}`)
	e.putRoom("shoe", `{"admit_per_second":1}`).json(t, 201, &waitingRoom{})
	alice, bob := e.session("alice"), e.session("bob")
	e.join(alice, "shoe", e.tokenHeader()).json(t, 201, &place{})
	e.join(bob, "shoe", e.tokenHeader()).json(t, 201, &place{})
	open := func(token string) (*http.Response, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		resp := openPlaceStream(t, e, ctx, token, "shoe")
		t.Cleanup(func() { cancel(); resp.Body.Close() })
		return resp, cancel
	}
	var cancels []context.CancelFunc
	for i := range httpapi.MaxPlaceStreams {
		resp, cancel := open(alice)
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: status %d", i+1, resp.StatusCode)
		}
		cancels = append(cancels, cancel)
	}
	resp, _ := open(alice)
	body, _ := io.ReadAll(resp.Body)
	(&response{Status: resp.StatusCode, Header: resp.Header, Body: body}).wantProblem(t, 429, revguard.CodeRateLimited)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if resp, _ := open(bob); resp.StatusCode != 200 {
		t.Fatalf("another customer's stream: status %d", resp.StatusCode)
	}
	cancels[0]() // the client leaves: its stream ends, and another may open
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, cancel := open(alice)
		if resp.StatusCode == 200 {
			break
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("status %d 10 s after a stream ended, want 200", resp.StatusCode)
		}
	}
}

// TestWaitingRoom_ClientLeavesMidReserve: an admitted customer whose client gives up
// while the hold is being made durable gets the hold (the reservation does not depend
// on the client's patience) and has spent its admission: a second reservation with it
// is refused, and one hold exists, not two.
func TestWaitingRoom_ClientLeavesMidReserve(t *testing.T) {
	var stall atomic.Bool
	e := mustOpenEnv(t, envOptions{clock: true, onFlush: func(int, int, time.Duration) {
		if stall.CompareAndSwap(true, false) {
			time.Sleep(600 * time.Millisecond) // the flusher stalls after this commit
		}
	}})
	e.putSKU("shoe", `{"stock":10,"per_customer_limit":2}`)
	e.putSKU("other", `{"stock":10}`)
	alice, bob := e.session("alice"), e.session("bob")
	if r := e.putRoom("shoe", `{"admit_per_second":5}`); r.Status != 201 {
		t.Fatalf("put room: %d %s", r.Status, r.Body)
	}
	if r := e.join(alice, "shoe", nil); r.Status != 201 {
		t.Fatalf("join: %d %s", r.Status, r.Body)
	}
	e.advance("shoe")
	if p := e.getPlace(alice, "shoe"); p.Status != "admitted" {
		t.Fatalf("alice's place %+v; want admitted", p)
	}

	stall.Store(true)
	e.reserve(bob, "other", ``, nil) // the commit after which the flusher stalls
	hreq, _ := http.NewRequest("POST", e.srv.URL+"/v1/skus/shoe/reservations", strings.NewReader(`{"quantity":1}`))
	hreq.Header.Set("Authorization", "Bearer "+alice)
	hreq.Header.Set("Content-Type", "application/json")
	if resp, err := (&http.Client{Timeout: 150 * time.Millisecond}).Do(hreq); err == nil {
		resp.Body.Close()
		t.Logf("the first reserve answered %d before the client gave up", resp.StatusCode)
	}
	// The abandoned reservation completes: alice holds one unit and her admission is used.
	for deadline := time.Now().Add(10 * time.Second); e.getPlace(alice, "shoe").Status != "used"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("alice's place %+v after her abandoned reservation; want used", e.getPlace(alice, "shoe"))
		}
	}
	e.reserve(alice, "shoe", ``, nil).wantProblem(t, 409, revguard.CodeAdmissionRequired)
	if s := e.getSKU("shoe"); s.Held != 1 {
		t.Fatalf("shoe %+v; want 1 held (the abandoned request's hold, once)", s)
	}
}

// hookedBotCheck runs hook before each bot check it passes on.
type hookedBotCheck struct {
	revguard.BotChecker
	hook func()
}

func (b hookedBotCheck) Verify(ctx context.Context, token, remoteIP string) error {
	b.hook()
	return b.BotChecker.Verify(ctx, token, remoteIP)
}

// TestWaitingRoom_PutDuringBotCheck: a room put while a reservation's bot check runs
// (which may take seconds) gates that reservation too: the customer, never admitted,
// is refused with admission_required and no hold is made. Admitted through the room,
// the customer then reserves.
func TestWaitingRoom_PutDuringBotCheck(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		var (
			e      *env
			once   sync.Once
			putErr error
		)
		e = mustOpenRoomEnv(t, envOptions{backend: b, edit: func(s *httpapi.Server) {
			s.BotChecker = hookedBotCheck{s.BotChecker, func() {
				once.Do(func() {
					_, _, putErr = e.room.PutRoom(context.Background(), "shoe", revguard.RoomSettings{AdmitPerSecond: 5})
				})
			}}
		}})
		e.putSKU("shoe", `{"stock":10}`)
		alice := e.session("alice")
		e.reserve(alice, "shoe", ``, e.tokenHeader()).wantProblem(t, 409, revguard.CodeAdmissionRequired)
		if putErr != nil {
			t.Fatalf("put the room during the bot check: %v", putErr)
		}
		if s := e.checkInvariant("shoe"); s.Held != 0 {
			t.Fatalf("shoe %+v; want nothing held", s)
		}
		if r := e.join(alice, "shoe", e.tokenHeader()); r.Status != 201 {
			t.Fatalf("join: %d %s", r.Status, r.Body)
		}
		e.advance("shoe")
		e.mustReserve(alice, "shoe", ``, e.tokenHeader())
		if p := e.getPlace(alice, "shoe"); p.Status != "used" {
			t.Fatalf("alice's place %+v; want used", p)
		}
	})
}

// TestWaitingRoom_JoinRefusalWithoutBotCheck checks that a join the room refuses for
// two reasons at once (the pre-queue not open yet, and nothing to sell) gets the same
// answer whether the bot check is on (the gateway refuses before spending the token)
// or off (the room refuses): the room's order, the pre-queue first.
func TestWaitingRoom_JoinRefusalWithoutBotCheck(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		for _, botCheck := range []bool{true, false} {
			e := mustOpenEnv(t, envOptions{backend: b, clock: true, botCheck: botCheck})
			if e.room == nil {
				t.Skipf("the %s backend has no waiting room", b)
			}
			// The clock is at 09:00; the pre-queue opens at 09:20, and there is no stock.
			e.putSKU("none", `{"stock":0,"opens_at":"2026-11-27T09:30:00Z"}`)
			e.putRoom("none", `{"admit_per_second":1,"pre_queue_seconds":600}`).json(t, 201, &waitingRoom{})
			e.advance("none")
			if !e.getRoom("none").SoldOut {
				t.Fatal("a room with nothing to sell is not closed")
			}
			var hdr map[string]string
			if botCheck {
				hdr = e.tokenHeader()
			}
			p := e.join(e.session("alice"), "none", hdr).wantProblem(t, 409, revguard.CodeSaleNotOpen)
			if !strings.Contains(p.Detail, "2026-11-27T09:20:00Z") {
				t.Errorf("bot check %v: detail %q does not say when the pre-queue opens", botCheck, p.Detail)
			}
		}
	})
}

// TestWaitingRoom_JoinSoldOutAtOnce checks that a join right after the last unit is
// sold is 409 sold_out before the bot check, without waiting for the room's timer to
// close the room: the customer does not queue, nor spend a token, for a sale that is over.
func TestWaitingRoom_JoinSoldOutAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := mustOpenRoomEnv(t, envOptions{backend: b})
		e.putSKU("last", `{"stock":1}`)
		e.putRoom("last", `{"admit_per_second":5}`).json(t, 201, &waitingRoom{})
		alice := e.session("alice")
		e.join(alice, "last", e.tokenHeader()).json(t, 201, &place{})
		e.advance("last")
		res := e.mustReserve(alice, "last", ``, e.tokenHeader())
		e.confirm(alice, res.ID, ``).json(t, 200, &reservation{})

		calls := e.verifier.Calls()
		e.join(e.session("bob"), "last", e.tokenHeader()).wantProblem(t, 409, revguard.CodeSoldOut)
		if e.verifier.Calls() != calls {
			t.Error("a join of a sold-out SKU spent a bot check")
		}
		if r := e.getRoom("last"); r.Joined != 1 {
			t.Errorf("room %+v after the refused join, want 1 place", r)
		}
	})
}

// TestWaitingRoomEventsLogout checks that a place stream ends once its session does:
// a logout refuses the token from then on, an open stream too.
func TestWaitingRoomEventsLogout(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := mustOpenRoomEnv(t, envOptions{backend: b, edit: func(s *httpapi.Server) { s.PlaceStreamEvery = 5 * time.Millisecond }})
		e.putSKU("shoe", `{"stock":5}`)
		e.putRoom("shoe", `{"admit_per_second":1}`).json(t, 201, &waitingRoom{})
		bob := e.session("bob")
		e.join(bob, "shoe", e.tokenHeader()).json(t, 201, &place{})

		conn := e.srv.dial(t) // fails a read after 10 s
		fmt.Fprintf(conn, "GET /v1/skus/shoe/waiting-room/place/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", bob)
		rd := bufio.NewReader(conn)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("before the first event: %v", err)
			}
			if strings.HasPrefix(line, "event: place") {
				break
			}
		}
		if r := e.do(req{Method: "DELETE", Path: "/v1/sessions/current", Token: bob}); r.Status != 204 {
			t.Fatalf("logout: %d %s", r.Status, r.Body)
		}
		if rest, err := io.ReadAll(rd); err != nil {
			t.Fatalf("the stream went on after the logout: %v (read %q)", err, rest)
		}
	})
}
