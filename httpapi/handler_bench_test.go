package httpapi_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/revguardtest"
)

// BenchmarkHandler measures the gateway's own cost per request, in process (no
// network): the sold-out refusal and the reserve on a journal without fsync.
//
//	go test ./httpapi -run '^$' -bench Handler
func BenchmarkHandler(b *testing.B) {
	e, tokens := openHandlerBench(b)
	var next atomic.Int64
	h := e.api.Handler()
	for _, bc := range []struct{ name, sku string }{{"SoldOut", "gone"}, {"Reserve", "bench"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				token := tokens[next.Add(1)%int64(len(tokens))]
				for pb.Next() {
					r := httptest.NewRequest("POST", "/v1/skus/"+bc.sku+"/reservations", strings.NewReader(`{"quantity":1}`))
					r.Header.Set("Authorization", "Bearer "+token)
					r.Header.Set("Content-Type", "application/json")
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != 201 && w.Code != 409 {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}

// BenchmarkHTTPServer measures what BenchmarkHandler does through the server's HTTP
// transport (HTTPServer): the conversion of fasthttp's parsed request into an
// *http.Request, the middleware, the handler and the answer in fasthttp's response,
// in process (no network, no parsing of the request's bytes).
//
//	go test ./httpapi -run '^$' -bench HTTPServer
func BenchmarkHTTPServer(b *testing.B) {
	e, tokens := openHandlerBench(b)
	var next atomic.Int64
	srv := e.api.NewHTTPServer(httpapi.HTTPConfig{})
	for _, bc := range []struct{ name, sku string }{{"SoldOut", "gone"}, {"Reserve", "bench"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				token := tokens[next.Add(1)%int64(len(tokens))]
				var ctx fasthttp.RequestCtx
				for pb.Next() {
					ctx.Request.Header.SetMethod("POST")
					ctx.Request.SetRequestURI("/v1/skus/" + bc.sku + "/reservations")
					ctx.Request.Header.SetHost("127.0.0.1:8080")
					ctx.Request.Header.Set("Authorization", "Bearer "+token)
					ctx.Request.Header.SetContentType("application/json")
					ctx.Request.SetBodyString(`{"quantity":1}`)
					srv.ServeCtx(&ctx)
					if c := ctx.Response.StatusCode(); c != 201 && c != 409 {
						b.Fatalf("status %d: %s", c, ctx.Response.Body())
					}
					ctx.Request.Reset()
					ctx.Response.Reset()
				}
			})
		})
	}
}

// openHandlerBench opens the env of BenchmarkHandler and BenchmarkHTTPServer: a
// journal without fsync, a SKU with stock to spare ("bench") and a sold-out one
// ("gone"), and 64 customers' session tokens.
func openHandlerBench(b *testing.B) (*env, []string) {
	e := mustOpenEnv(b, envOptions{noSync: true})
	e.putSKU("bench", `{"stock":1000000000,"per_customer_limit":1000000,"hold_seconds":86400}`)
	e.putSKU("gone", `{"stock":0}`)
	var tokens []string
	for i := range 64 {
		tokens = append(tokens, e.session(fmt.Sprintf("bench-%d", i)))
	}
	return e, tokens
}

// BenchmarkPlacePoll measures a customer's poll of its place (GET
// .../waiting-room/place) in a room of 100,000 places, in process: the session
// lookup, the rate-limit-free handler and the room's read. 100,000 customers polling
// once a second cost 100,000 × ns/op of CPU a second.
//
//	go test ./httpapi -run '^$' -bench PlacePoll
func BenchmarkPlacePoll(b *testing.B) {
	for _, be := range []backend{embedded, distributed} {
		b.Run(string(be), func(b *testing.B) {
			e := mustOpenEnv(b, envOptions{backend: be, noSync: true, noLedger: true})
			e.putSKU("drop", `{"stock":100}`)
			if r := e.putRoom("drop", `{"admit_per_second":10}`); r.Status != 201 {
				b.Fatalf("PUT room: %d %s", r.Status, r.Body)
			}
			const places, pollers = 100_000, 256
			revguardtest.JoinPlaces(b, e.room, "drop", places)
			var tokens []string
			for i := range pollers {
				tokens = append(tokens, e.session(fmt.Sprintf("c-%06d", i*(places/pollers))))
			}
			var next atomic.Int64
			h := e.api.Handler()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				token := tokens[next.Add(1)%int64(len(tokens))]
				for pb.Next() {
					r := httptest.NewRequest("GET", "/v1/skus/drop/waiting-room/place", nil)
					r.Header.Set("Authorization", "Bearer "+token)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != 200 {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
