package httpapi_test

import (
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// Reservations after the reserve: read, confirm, release, expiry and revive, and the
// ledger listings.

func (e *env) getReservation(token, id string) *response {
	return e.do(req{Method: "GET", Path: "/v1/reservations/" + id, Token: token})
}

func (e *env) confirm(token, id, body string) *response {
	return e.do(req{Method: "POST", Path: "/v1/reservations/" + id + "/confirm", Token: token, Body: body})
}

func (e *env) release(token, id, body string) *response {
	return e.do(req{Method: "POST", Path: "/v1/reservations/" + id + "/release", Token: token, Body: body})
}

func TestLifecycle(t *testing.T) { eachBackend(t, testLifecycle) }

func testLifecycle(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b, clock: true})
	e.putSKU("tee", `{"stock":10,"per_customer_limit":2,"hold_seconds":60}`)
	alice, bob := e.session("alice"), e.session("bob")
	held := e.mustReserve(alice, "tee", ``, nil)

	t.Run("Get", func(t *testing.T) {
		e := e.with(t)
		var got reservation
		e.getReservation(alice, held.ID).json(t, 200, &got)
		if !reflect.DeepEqual(got, held) {
			t.Fatalf("GET %+v, want %+v", got, held)
		}
		e.getReservation(e.admin, held.ID).json(t, 200, &got)
	})
	t.Run("ErrReservationNotFound", func(t *testing.T) {
		e := e.with(t)
		r := e.getReservation(bob, held.ID)
		r.wantProblem(t, 404, revguard.CodeReservationNotFound)
		golden(t, "problem_reservation_not_found", r.Body)
		unknown := e.getReservation(alice, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
		unknown.wantProblem(t, 404, revguard.CodeReservationNotFound)
		if string(r.Body) != string(unknown.Body) {
			t.Fatalf("another customer's reservation answers differently from an unknown one:\n%s\n%s", r.Body, unknown.Body)
		}
		for _, id := range []string{"x!y", strings.Repeat("a", 129), "%00"} {
			e.getReservation(alice, id).wantProblem(t, 404, revguard.CodeReservationNotFound)
			e.confirm(alice, id, ``).wantProblem(t, 404, revguard.CodeReservationNotFound)
			e.release(alice, id, ``).wantProblem(t, 404, revguard.CodeReservationNotFound)
		}
		e.confirm(bob, held.ID, ``).wantProblem(t, 404, revguard.CodeReservationNotFound)
		e.release(bob, held.ID, ``).wantProblem(t, 404, revguard.CodeReservationNotFound)
		e.getReservation("", held.ID).wantProblem(t, 401, revguard.CodeUnauthenticated)
	})
	t.Run("Confirm", func(t *testing.T) {
		e := e.with(t)
		e.confirm(alice, held.ID, `{"order_ref":"x","bogus":1}`).wantProblem(t, 400, revguard.CodeInvalidRequest)
		e.confirm(alice, held.ID, `{"order_ref":"`+strings.Repeat("r", 129)+`"}`).wantProblem(t, 400, revguard.CodeInvalidRequest)
		e.confirm(e.admin, held.ID, ``).wantProblem(t, 403, revguard.CodeForbidden)
		r := e.confirm(alice, held.ID, `{"order_ref":"merchant-order-123","revive":false}`)
		var got reservation
		r.json(t, 200, &got)
		if got.Status != "confirmed" || got.ConfirmedAt == nil || *got.ConfirmedAt != "2026-11-27T09:00:00Z" || got.OrderRef == nil || *got.OrderRef != "merchant-order-123" {
			t.Fatalf("confirmed %+v", got)
		}
		golden(t, "reservation_confirmed", r.Body)
		// Again: 200, nothing changes.
		var again reservation
		e.confirm(alice, held.ID, ``).json(t, 200, &again)
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("confirming again changed %+v into %+v", got, again)
		}
		if s := e.checkInvariant("tee"); s.Sold != 1 || s.Held != 0 {
			t.Fatalf("after confirm %+v", s)
		}
	})
	t.Run("ErrAlreadyConfirmed", func(t *testing.T) {
		e := e.with(t)
		r := e.release(alice, held.ID, ``)
		r.wantProblem(t, 409, revguard.CodeAlreadyConfirmed)
		golden(t, "problem_already_confirmed", r.Body)
		e.release(e.admin, held.ID, ``).wantProblem(t, 409, revguard.CodeAlreadyConfirmed)
	})
	t.Run("Release", func(t *testing.T) {
		e := e.with(t)
		h := e.mustReserve(alice, "tee", ``, nil)
		e.release(alice, h.ID, `{"x":1}`).wantProblem(t, 400, revguard.CodeInvalidRequest)
		e.release(alice, h.ID, `{}`+`{}`).wantProblem(t, 400, revguard.CodeInvalidRequest)
		r := e.release(alice, h.ID, `{}`)
		var got reservation
		r.json(t, 200, &got)
		if got.Status != "released" || got.ReleasedAt == nil {
			t.Fatalf("released %+v", got)
		}
		golden(t, "reservation_released", r.Body)
		e.release(alice, h.ID, ``).json(t, 200, &got)
		r = e.confirm(alice, h.ID, `{"revive":true}`)
		r.wantProblem(t, 409, revguard.CodeHoldReleased)
		golden(t, "problem_hold_released", r.Body)
		// The admin may release anyone's hold.
		b := e.mustReserve(bob, "tee", ``, nil)
		e.release(e.admin, b.ID, ``).json(t, 200, &got)
		if s := e.checkInvariant("tee"); s.Held != 0 || s.Sold != 1 || s.Available != 9 {
			t.Fatalf("after releases %+v", s)
		}
	})
	t.Run("ExpiryAndRevive", func(t *testing.T) {
		e := e.with(t)
		h := e.mustReserve(bob, "tee", ``, nil)
		e.clock.Advance(61 * time.Second)
		var got reservation
		e.getReservation(bob, h.ID).json(t, 200, &got)
		if got.Status != "expired" {
			t.Fatalf("a hold past expires_at is %q", got.Status)
		}
		if s := e.checkInvariant("tee"); s.Held != 0 {
			t.Fatalf("an expired hold still holds units: %+v", s)
		}
		r := e.confirm(bob, h.ID, ``)
		r.wantProblem(t, 409, revguard.CodeHoldExpired)
		golden(t, "problem_hold_expired", r.Body)
		e.release(bob, h.ID, ``).wantProblem(t, 409, revguard.CodeHoldExpired)
		e.confirm(bob, h.ID, `{"revive":true,"order_ref":"late-payment"}`).json(t, 200, &got)
		if got.Status != "confirmed" || *got.OrderRef != "late-payment" {
			t.Fatalf("revived %+v", got)
		}
		if s := e.checkInvariant("tee"); s.Sold != 2 {
			t.Fatalf("after revive %+v", s)
		}
	})
	t.Run("ErrReviveSoldOut", func(t *testing.T) {
		e := e.with(t)
		e.putSKU("one", `{"stock":1,"hold_seconds":60}`)
		carol, dave := e.session("carol"), e.session("dave")
		h := e.mustReserve(carol, "one", ``, nil)
		e.clock.Advance(61 * time.Second)
		e.mustReserve(dave, "one", ``, nil)
		e.confirm(carol, h.ID, `{"revive":true}`).wantProblem(t, 409, revguard.CodeSoldOut)
		var got reservation
		e.getReservation(carol, h.ID).json(t, 200, &got)
		if got.Status != "expired" {
			t.Fatalf("a refused revive left %q", got.Status)
		}
		e.checkInvariant("one")
	})
	t.Run("ErrReviveLimitExceeded", func(t *testing.T) {
		e := e.with(t)
		e.putSKU("lim", `{"stock":5,"per_customer_limit":1,"hold_seconds":60}`)
		erin := e.session("erin")
		h := e.mustReserve(erin, "lim", ``, nil)
		e.clock.Advance(61 * time.Second)
		e.mustReserve(erin, "lim", ``, nil)
		e.confirm(erin, h.ID, `{"revive":true}`).wantProblem(t, 409, revguard.CodeLimitExceeded)
		e.checkInvariant("lim")
	})
}

func TestOrders(t *testing.T) { eachBackend(t, testOrders) }

func testOrders(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b})
	e.putSKU("a", `{"stock":10,"per_customer_limit":5}`)
	e.putSKU("b", `{"stock":10,"per_customer_limit":5}`)
	alice, bob := e.session("alice"), e.session("bob")
	var all []reservation // creation order
	for i := range 3 {
		all = append(all, e.mustReserve(alice, "a", ``, nil))
		all = append(all, e.mustReserve(bob, []string{"a", "b", "b"}[i], ``, nil))
	}
	e.confirm(alice, all[0].ID, `{"order_ref":"o-1"}`).json(t, 200, &all[0])
	e.release(bob, all[1].ID, ``).json(t, 200, &all[1])
	e.waitLedger()
	// The ledger orders by id; ids are time-sortable, but two made in one millisecond
	// may sort either way.
	slices.SortFunc(all, func(a, b reservation) int { return strings.Compare(a.ID, b.ID) })
	pick := func(keep func(reservation) bool) []string {
		var out []string
		for _, r := range all {
			if keep(r) {
				out = append(out, r.ID)
			}
		}
		return out
	}

	list := func(t *testing.T, token, path string) []reservation {
		t.Helper()
		var items []reservation
		for range 100 {
			var page orderPage
			e.do(req{Method: "GET", Path: path, Token: token}).json(t, 200, &page)
			items = append(items, page.Items...)
			if page.NextCursor == nil {
				return items
			}
			u, _ := url.Parse(path)
			q := u.Query()
			q.Set("cursor", *page.NextCursor)
			u.RawQuery = q.Encode()
			path = u.String()
		}
		t.Fatal("paging did not end")
		return nil
	}
	ids := func(rs []reservation) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}

	t.Run("All", func(t *testing.T) {
		e := e.with(t)
		got := list(t, e.admin, "/v1/orders")
		if !reflect.DeepEqual(got, all) {
			t.Fatalf("orders:\n got %+v\nwant %+v", got, all)
		}
		paged := list(t, e.admin, "/v1/orders?limit=2")
		if !slices.Equal(ids(paged), ids(all)) {
			t.Fatalf("paged by 2: %v, want %v", ids(paged), ids(all))
		}
		// Two held units of alice on SKU a look alike once normalized, whichever comes first.
		r := e.do(req{Method: "GET", Path: "/v1/orders?sku=a&customer_id=alice&status=held&limit=1", Token: e.admin})
		golden(t, "orders_page", r.Body)
	})
	t.Run("Filters", func(t *testing.T) {
		e := e.with(t)
		if got := list(t, e.admin, "/v1/orders?sku=b"); !slices.Equal(ids(got), pick(func(r reservation) bool { return r.SKU == "b" })) {
			t.Fatalf("sku=b: %v", ids(got))
		}
		if got := list(t, e.admin, "/v1/orders?customer_id=alice&status=held&limit=1"); !slices.Equal(ids(got), pick(func(r reservation) bool {
			return r.CustomerID == "alice" && r.Status == "held"
		})) || len(got) != 2 {
			t.Fatalf("alice held: %v", ids(got))
		}
		if got := list(t, e.admin, "/v1/orders?status=released"); len(got) != 1 || got[0].Status != "released" || got[0].CustomerID != "bob" {
			t.Fatalf("released: %v", ids(got))
		}
		if got := list(t, e.admin, "/v1/orders?sku=none&cursor="); len(got) != 0 {
			t.Fatalf("unknown sku: %v", ids(got))
		}
	})
	t.Run("Me", func(t *testing.T) {
		e := e.with(t)
		got := list(t, bob, "/v1/me/reservations?limit=1")
		want := pick(func(r reservation) bool { return r.CustomerID == "bob" })
		slices.Reverse(want)
		if !slices.Equal(ids(got), want) {
			t.Fatalf("bob's reservations newest first: %v, want %v", ids(got), want)
		}
		if got := list(t, alice, "/v1/me/reservations?status=confirmed"); len(got) != 1 || *got[0].OrderRef != "o-1" {
			t.Fatalf("alice confirmed: %v", ids(got))
		}
		e.do(req{Method: "GET", Path: "/v1/me/reservations?customer_id=alice", Token: bob}).wantProblem(t, 400, revguard.CodeInvalidRequest)
		e.do(req{Method: "GET", Path: "/v1/me/reservations?sku=..", Token: bob}).wantProblem(t, 400, revguard.CodeInvalidSKU)
	})
	t.Run("ErrInvalidQuery", func(t *testing.T) {
		e := e.with(t)
		for _, q := range []string{"limit=0", "limit=1001", "limit=x", "limit=1&limit=2", "status=bogus", "status=",
			"customer_id=", "customer_id=%01", "cursor=garbage", "cursor=" + strings.Repeat("A", 300), "page=2", "sku=a%zz"} {
			e.do(req{Method: "GET", Path: "/v1/orders?" + q, Token: e.admin}).wantProblem(t, 400, revguard.CodeInvalidRequest)
		}
		for _, q := range []string{"sku=bad!", "sku=", "sku=.", "sku=.."} {
			e.do(req{Method: "GET", Path: "/v1/orders?" + q, Token: e.admin}).wantProblem(t, 400, revguard.CodeInvalidSKU)
		}
		// A cursor of another query is refused too.
		var page orderPage
		e.do(req{Method: "GET", Path: "/v1/orders?limit=1", Token: e.admin}).json(t, 200, &page)
		e.do(req{Method: "GET", Path: "/v1/orders?limit=1&sku=b&cursor=" + url.QueryEscape(*page.NextCursor), Token: e.admin}).
			wantProblem(t, 400, revguard.CodeInvalidRequest)
	})
}
