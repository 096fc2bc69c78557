package loadtest

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	rgclient "github.com/revenueguard/revguard/client"
)

// Seeds of the answers to a reservation call: what a server answers, well-formed or not.
var reservationSeeds = []string{
	`{"id":"01J","sku":"s","customer_id":"c","quantity":1,"status":"held","created_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:10:00Z","confirmed_at":null,"released_at":null,"order_ref":null}`,
	`{"id":"01J","quantity":2,"status":"released","created_at":"2026-11-27T10:00:00.5Z","expires_at":"2026-11-27T10:00:01.5Z","released_at":"2026-11-27T10:00:01Z"}`,
	`{"id":"","status":"held"}`,               // no id
	`{"id":"x","status":"gone","quantity":1}`, // unknown status
	`{"id":"x","status":"held","quantity":0}`, // no units
	`{"id":"x","status":"held","quantity":1,"created_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T09:00:00Z"}`,
	`{"id":"x","created_at":"yesterday"}`, // bad time
	`[]`, `null`, `{`, ``,
}

// FuzzReservationCheck: what the load test accepts from a decoded reservation is a
// usable one.
func FuzzReservationCheck(f *testing.F) {
	for _, s := range reservationSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r rgclient.Reservation
		if json.Unmarshal(b, &r) != nil {
			return
		}
		res := fromReservation(&r)
		if res.check() != nil {
			return
		}
		if res.ID == "" || !revguard.Status(res.Status).Valid() || res.Quantity < 1 || res.ExpiresAt.Before(res.CreatedAt) ||
			res.ReleasedAt != nil && !res.ReleasedAt.Equal(r.ReleasedAt) {
			t.Fatalf("accepted %+v from %q", res, b)
		}
	})
}

// TestReservationAnswers: through the real transport, a 201 carries a checked
// reservation, a malformed or implausible one is a bad_response, an error answer
// carries its code, and one that is not a problem document is a bad_response.
func TestReservationAnswers(t *testing.T) {
	var body string
	status, ctype := 201, "application/json"
	srv := newConnServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
	c := fastClient(t, 5*time.Second, srv.URL)
	for i, s := range reservationSeeds {
		body = s
		a := c.reserve(t.Context(), "s", "tok", "", "k", 1)
		if ok := i < 2; a.err != nil || a.status != 201 || (a.res != nil) != ok || ok == (a.code == codeBadResponse) {
			t.Errorf("201 %s: answer %+v, want a reservation %v", s, a, ok)
		}
	}
	for _, tc := range []struct {
		ctype, body string
		code        revguard.Code
	}{
		{"application/problem+json", `{"type":"about:blank","title":"Sold out","status":409,"detail":"no units left","code":"sold_out"}`, revguard.CodeSoldOut},
		{"application/problem+json", `{"status":409}`, codeBadResponse},
		{"text/html", `<html>busy</html>`, codeBadResponse},
		{"application/problem+json", ``, codeBadResponse},
	} {
		status, ctype, body = 409, tc.ctype, tc.body
		if a := c.reserve(t.Context(), "s", "tok", "", "k", 1); a.err != nil || a.status != 409 || a.code != tc.code || a.res != nil {
			t.Errorf("409 %s: answer %+v, want code %s", tc.body, a, tc.code)
		}
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
