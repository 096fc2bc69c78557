package httpapi_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkHandler measures the gateway's own cost per request, in process (no
// network): the sold-out refusal and the reserve on a journal without fsync.
//
//	go test ./httpapi -run '^$' -bench Handler
func BenchmarkHandler(b *testing.B) {
	e := mustOpenEnv(b, envOptions{noSync: true})
	e.putSKU("bench", `{"stock":1000000000,"per_customer_limit":1000000,"hold_seconds":86400}`)
	e.putSKU("gone", `{"stock":0}`)
	var tokens []string
	for i := range 64 {
		tokens = append(tokens, e.session(fmt.Sprintf("bench-%d", i)))
	}
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
