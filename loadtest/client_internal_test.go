package loadtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/revenueguard/revguard"
)

// Seeds of the answer decoders: what a server answers, well-formed or not.
var (
	reservationSeeds = []string{
		`{"id":"01J","sku":"s","customer_id":"c","quantity":1,"status":"held","created_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:10:00Z","confirmed_at":null,"released_at":null,"order_ref":null}`,
		`{"id":"01J","quantity":2,"status":"released","created_at":"2026-11-27T10:00:00.5Z","expires_at":"2026-11-27T10:00:01.5Z","released_at":"2026-11-27T10:00:01Z"}`,
		`{"id":"","status":"held"}`,               // no id
		`{"id":"x","status":"gone","quantity":1}`, // unknown status
		`{"id":"x","status":"held","quantity":0}`, // no units
		`{"id":"x","status":"held","quantity":1,"created_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T09:00:00Z"}`,
		`{"id":"x","created_at":"yesterday"}`, // bad time
		`[]`, `null`, `{`, ``,
	}
	ordersSeeds = []string{
		`{"items":[],"next_cursor":null}`,
		`{"items":[{"id":"a","quantity":1,"status":"expired","created_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:00:05Z"}],"next_cursor":"abc"}`,
		`{"items":[],"next_cursor":""}`, // empty cursor
		`{"next_cursor":null}`,          // no items
		`{"items":[{"id":""}]}`,         // a bad item
		`{"items":{}}`, `nul`,
	}
	problemSeeds = []string{
		`{"type":"about:blank","title":"Sold out","status":409,"detail":"no units left","code":"sold_out"}`,
		`{"status":500}`, `<html>busy</html>`, ``,
	}
)

// FuzzDecodeReservation: never panics, and what it accepts is a usable reservation.
func FuzzDecodeReservation(f *testing.F) {
	for _, s := range reservationSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeReservation(b)
		if err != nil {
			return
		}
		if r.ID == "" || !revguard.Status(r.Status).Valid() || r.Quantity < 1 || r.ExpiresAt.Before(r.CreatedAt) {
			t.Fatalf("accepted %+v from %q", r, b)
		}
	})
}

// FuzzDecodeOrders: never panics; an accepted page has items, each usable, and a
// cursor that is null or not empty.
func FuzzDecodeOrders(f *testing.F) {
	for _, s := range ordersSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeOrders(b)
		if err != nil {
			return
		}
		if p.Items == nil || (p.NextCursor != nil && *p.NextCursor == "") {
			t.Fatalf("accepted %+v from %q", p, b)
		}
		for _, r := range p.Items {
			if r.check() != nil {
				t.Fatalf("accepted a bad item %+v from %q", r, b)
			}
		}
	})
}

// FuzzDecodeProblem: never panics, and always yields a code: the document's, or
// bad_response for anything that is not a problem document; the cache yields the same.
func FuzzDecodeProblem(f *testing.F) {
	for _, s := range problemSeeds {
		f.Add([]byte(s))
	}
	var pc problemCache // shared by the inputs, as by a sale's answers
	f.Fuzz(func(t *testing.T, b []byte) {
		code, detail := decodeProblem(b)
		if code == "" {
			t.Fatalf("no code from %q", b)
		}
		for range 2 { // once to remember it, once from memory
			if c, d := pc.decode(b); c != code || d != detail {
				t.Fatalf("cached decode of %q = %q, %q; want %q, %q", b, c, d, code, detail)
			}
		}
		var p problem
		if json.Unmarshal(b, &p) == nil && p.Code != "" && code != revguard.Code(p.Code) {
			t.Fatalf("code %q, document says %q", code, p.Code)
		}
	})
}

func TestDecoders(t *testing.T) {
	for i, s := range reservationSeeds {
		_, err := decodeReservation([]byte(s))
		if ok := i < 2; (err == nil) != ok {
			t.Errorf("decodeReservation(%s): err %v, want ok %v", s, err, ok)
		}
	}
	for i, s := range ordersSeeds {
		_, err := decodeOrders([]byte(s))
		if ok := i < 2; (err == nil) != ok {
			t.Errorf("decodeOrders(%s): err %v, want ok %v", s, err, ok)
		}
	}
	for i, s := range problemSeeds {
		code, _ := decodeProblem([]byte(s))
		if want := map[bool]revguard.Code{true: "sold_out", false: codeBadResponse}[i == 0]; code != want {
			t.Errorf("decodeProblem(%s) = %q, want %q", s, code, want)
		}
	}
}

// TestProblemCache: the cache answers what decodeProblem answers, for documents seen
// before or not, and stops growing at its bound.
func TestProblemCache(t *testing.T) {
	var pc problemCache
	for range 2 {
		for _, s := range problemSeeds {
			code, detail := pc.decode([]byte(s))
			wantCode, wantDetail := decodeProblem([]byte(s))
			if code != wantCode || detail != wantDetail {
				t.Errorf("decode(%s) = %q, %q; want %q, %q", s, code, detail, wantCode, wantDetail)
			}
		}
	}
	for i := range 2 * maxMemo {
		doc := fmt.Sprintf(`{"status":409,"code":"sold_out","detail":"only %d left"}`, i)
		if code, detail := pc.decode([]byte(doc)); code != revguard.CodeSoldOut || detail != fmt.Sprintf("only %d left", i) {
			t.Fatalf("decode(%s) = %q, %q", doc, code, detail)
		}
	}
	if n := len(*pc.seen.Load()); n != maxMemo {
		t.Errorf("%d documents remembered, want the bound %d", n, maxMemo)
	}
}

// TestDateCache: the cache parses as http.ParseTime does, a date seen before or not,
// and refuses what is not a date.
func TestDateCache(t *testing.T) {
	var dc dateCache
	for _, v := range []string{"Fri, 27 Nov 2026 10:00:00 GMT", "Fri, 27 Nov 2026 10:00:00 GMT", "Fri, 27 Nov 2026 10:00:01 GMT", "yesterday", ""} {
		got, ok := dc.parse(v)
		want, err := http.ParseTime(v)
		if ok != (err == nil) || !got.Equal(want) {
			t.Errorf("parse(%q) = %v, %v; want %v, %v", v, got, ok, want, err)
		}
	}
}
