package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
)

// The HTTP fuzzers send arbitrary ids, bodies, queries and headers through the whole
// handler on the real backends. Whatever comes in: never a 5xx, never a panic, every
// error a well-formed problem document, and the SKU's invariant intact.

// serve sends r to the env's handler in process (faster than a socket per input) and
// checks the answer's shape.
func (e *env) serve(t *testing.T, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	e.api.Handler().ServeHTTP(w, r)
	if w.Code >= 500 {
		t.Fatalf("%s %s: %d %s", r.Method, r.URL, w.Code, w.Body)
	}
	if w.Header().Get("X-Request-Id") == "" {
		t.Fatalf("%s %s: no X-Request-Id", r.Method, r.URL)
	}
	if w.Code >= 400 {
		var p struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		}
		if w.Header().Get("Content-Type") != "application/problem+json" || json.Unmarshal(w.Body.Bytes(), &p) != nil ||
			p.Status != w.Code || p.Code == "" {
			t.Fatalf("%s %s: malformed problem %d %q", r.Method, r.URL, w.Code, w.Body)
		}
	}
	return w
}

// headerSafe reports whether v could arrive as a header value (net/http refuses the rest
// before any handler runs).
func headerSafe(v string) bool {
	return !strings.ContainsAny(v, "\r\n\x00")
}

func FuzzReserveHTTP(f *testing.F) {
	e := mustOpenEnv(f, envOptions{noSync: true, botCheck: true})
	e.putSKU("fz", `{"stock":1000000000,"per_customer_limit":1000000}`)
	token := e.session("fuzzer")
	// Seeds: sku, body, Content-Type, Idempotency-Key, Turnstile token, authenticated.
	f.Add("fz", []byte(``), "", "", "", true)
	f.Add("fz", []byte(`{"quantity":2}`), "application/json", "k1", "", true)
	f.Add("fz", []byte(`{"quantity":1,"turnstile_token":"t"}`), "application/json; charset=utf-8", "", "XXXX.DUMMY.TOKEN.XXXX", true)
	f.Add("fz", []byte(`{"quantity":1}`), "text/plain", "", "", true)
	f.Add("no-such", []byte(`{}`), "application/json", "", "", true)
	f.Add("bad!", []byte(`{"quantity":1}`), "application/json", "", "", false)
	f.Add("fz", []byte(`{"quantity":1,"quantity":1}`), "application/json", strings.Repeat("k", 256), "", true)
	f.Add("../fz", []byte(`[`), "application/json", "\x7f", "", true)
	f.Fuzz(func(t *testing.T, skuID string, body []byte, ctype, key, bot string, auth bool) {
		e := e.with(t)
		if !headerSafe(ctype) || !headerSafe(key) || !headerSafe(bot) {
			return
		}
		r := httptest.NewRequest("POST", "/v1/skus/"+url.PathEscape(skuID)+"/reservations", bytes.NewReader(body))
		if auth {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		if key != "" {
			r.Header.Set("Idempotency-Key", key)
		}
		if bot != "" {
			r.Header.Set("CF-Turnstile-Response", bot)
		}
		w := e.serve(t, r)
		if w.Code == 201 && (!auth || skuID != "fz") {
			t.Fatalf("reserved on %q (authenticated %v)", skuID, auth)
		}
		if w.Code != 404 && !revguard.ValidSKUID(skuID) && auth {
			if w.Code != 400 {
				t.Fatalf("invalid SKU id %q answered %d", skuID, w.Code)
			}
		}
	})
	e.checkInvariant("fz")
}

func FuzzSKUHTTP(f *testing.F) {
	e := mustOpenEnv(f, envOptions{noSync: true})
	f.Add("a", []byte(`{"stock":1}`))
	f.Add("A-z_0.9:x", []byte(`{"stock":5,"per_customer_limit":2,"hold_seconds":60,"opens_at":"2026-11-27T10:00:00Z"}`))
	f.Add("sp ace", []byte(`{"stock":1}`))
	f.Add("ü", []byte(`{"stock":-1}`))
	f.Add(strings.Repeat("x", 129), []byte(`{"stock":1,"opens_at":null}`))
	f.Add("a/b", []byte(`{"stock":1,"extra":{}}`))
	f.Fuzz(func(t *testing.T, skuID string, body []byte) {
		e := e.with(t)
		path := "/v1/skus/" + url.PathEscape(skuID)
		r := httptest.NewRequest("PUT", path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+e.admin)
		r.Header.Set("Content-Type", "application/json")
		w := e.serve(t, r)
		if (w.Code == 200 || w.Code == 201) != (revguard.ValidSKUID(skuID) && w.Code < 400) {
			t.Fatalf("PUT %q answered %d", skuID, w.Code)
		}
		if w.Code < 400 {
			if !revguard.ValidSKUID(skuID) {
				t.Fatalf("created SKU with invalid id %q", skuID)
			}
			e.checkInvariant(skuID)
		}
		w = e.serve(t, httptest.NewRequest("GET", path+"/availability", nil))
		if w.Code == 400 && revguard.ValidSKUID(skuID) {
			t.Fatalf("valid id %q refused", skuID)
		}
	})
}

func FuzzReservationIDHTTP(f *testing.F) {
	e := mustOpenEnv(f, envOptions{noSync: true})
	e.putSKU("r", `{"stock":10}`)
	token := e.session("owner")
	res := e.mustReserve(token, "r", ``, nil)
	f.Add(res.ID, "GET", "")
	f.Add(res.ID, "confirm", `{"order_ref":"x"}`)
	f.Add("01ARZ3NDEKTSV4RRFFQ69G5FAV", "release", `{}`)
	f.Add("%00", "GET", "")
	f.Add(strings.Repeat("Z", 200), "confirm", `{"revive":true}`)
	f.Fuzz(func(t *testing.T, id, op, body string) {
		path := "/v1/reservations/" + url.PathEscape(id)
		method := "POST"
		switch op {
		case "GET":
			method = "GET"
		case "confirm", "release":
			path += "/" + op
		default:
			return
		}
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Content-Type", "application/json")
		w := e.serve(t, r)
		if w.Code < 300 && id != res.ID {
			t.Fatalf("%s %q answered %d", op, id, w.Code)
		}
	})
	e.checkInvariant("r")
}

func FuzzOrdersQuery(f *testing.F) {
	e := mustOpenEnv(f, envOptions{noSync: true})
	for _, q := range []string{"", "limit=1", "sku=a&status=held&customer_id=c&limit=1000", "cursor=abc", "limit=-1",
		"status=bogus", "sku=%zz", "a=b", "limit=1&limit=1", "customer_id=%ff%fe", "cursor=" + strings.Repeat("%41", 50)} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/v1/orders", nil)
		r.URL.RawQuery = q
		r.Header.Set("Authorization", "Bearer "+e.admin)
		if w := e.serve(t, r); w.Code != 200 && w.Code != 400 {
			t.Fatalf("query %q answered %d", q, w.Code)
		}
	})
}

// FuzzHeaders sends arbitrary values of the headers the server reads.
func FuzzHeaders(f *testing.F) {
	e := mustOpenEnv(f, envOptions{noSync: true, botCheck: true})
	e.putSKU("h", `{"stock":5}`)
	token := e.session("h")
	f.Add("Bearer "+token, "id-1", "k", "1.2.3.4", "tok")
	f.Add("Bearer "+token, "dGVzdA+/=@1", "k2", "", "tok") // base64 and @: echoed (docs/api.md)
	f.Add("Bearer "+e.admin, "", "", "", "")
	f.Add("bearer", strings.Repeat("i", 200), "\x01", "::1, x", "")
	f.Add("Basic Zm9vOmJhcg==", "a b", strings.Repeat("k", 300), "", strings.Repeat("t", 3000))
	f.Fuzz(func(t *testing.T, authz, requestID, key, xff, bot string) {
		for _, v := range []string{authz, requestID, key, xff, bot} {
			if !headerSafe(v) {
				return
			}
		}
		r := httptest.NewRequest("POST", "/v1/skus/h/reservations", nil)
		r.Header.Set("Authorization", authz)
		r.Header.Set("X-Request-Id", requestID)
		r.Header.Set("Idempotency-Key", key)
		r.Header.Set("X-Forwarded-For", xff)
		r.Header.Set("CF-Turnstile-Response", bot)
		w := e.serve(t, r)
		switch got, echoable := w.Header().Get("X-Request-Id"), httpapi.EchoableRequestID(requestID); {
		case got == requestID && !echoable:
			t.Fatalf("echoed an unsafe request id %q", requestID)
		case got != requestID && echoable:
			t.Fatalf("request id %q answered as %q, want it echoed", requestID, got)
		}
	})
	e.checkInvariant("h")
}

// FuzzWaitingRoomHTTP sends arbitrary SKU ids, bodies and content types to the waiting
// room's endpoints, as the admin (PUT) and as a customer (join, poll): never a 5xx, and
// the room of the fuzzed SKU keeps settings in range, with one place per customer.
func FuzzWaitingRoomHTTP(f *testing.F) {
	e := mustOpenEnv(f, envOptions{noSync: true})
	e.putSKU("fz", `{"stock":100}`)
	if r := e.putRoom("fz", `{"admit_per_second":5}`); r.Status != 201 {
		f.Fatalf("PUT room: %d %s", r.Status, r.Body)
	}
	token := e.session("fuzzer")
	// Seeds: sku, body, Content-Type, which endpoint (0 PUT room, 1 join, 2 poll, 3 events).
	f.Add("fz", []byte(`{"admit_per_second":7,"pre_queue_seconds":60}`), "application/json", uint8(0))
	f.Add("fz", []byte(`{"admit_per_second":0}`), "application/json", uint8(0))
	f.Add("fz", []byte(`{"admission_seconds":null,"admit_per_second":1e3}`), "application/json", uint8(0))
	f.Add("fz", []byte(``), "", uint8(1))
	f.Add("fz", []byte(`{"turnstile_token":"x"}`), "application/json", uint8(1))
	f.Add("fz", []byte(`{"turnstile_token":1}`), "application/json", uint8(1))
	f.Add("no-such", []byte(``), "", uint8(2))
	f.Add("bad!", []byte(`[`), "text/plain", uint8(3))
	f.Fuzz(func(t *testing.T, skuID string, body []byte, ctype string, which uint8) {
		e := e.with(t)
		if !headerSafe(ctype) {
			return
		}
		path := "/v1/skus/" + url.PathEscape(skuID) + "/waiting-room"
		method, tok := "PUT", e.admin
		switch which % 4 {
		case 1:
			method, path, tok = "POST", path+"/place", token
		case 2:
			method, path, tok, body = "GET", path+"/place", token, nil
		case 3:
			method, path, tok, body = "GET", path+"/place/events", token, nil
		}
		if which%4 == 3 && skuID == "fz" {
			return // a stream of a place that exists does not end
		}
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		e.serve(t, r)
		room, err := e.room.FindRoom(t.Context(), "fz")
		if err != nil || room.Validate() != nil || room.Joined > 1 {
			t.Fatalf("room of fz after %s %s: %+v, %v", method, path, room, err)
		}
	})
}
