package loadtest_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/revenueguard/revguard/loadtest"
)

// BenchmarkBaselineReserve measures one reservation through each baseline store, from
// 16 goroutines, with enough stock never to sell out and a customer per reservation:
// the cost of the store's reserve path alone. The stores whose URL is unset are skipped.
//
//	REVGUARD_TEST_REDIS_URL=redis://127.0.0.1:6379/0 \
//	REVGUARD_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	go test -run '^$' -bench BaselineReserve ./loadtest
func BenchmarkBaselineReserve(b *testing.B) {
	stores := map[string]func() (loadtest.BaselineStore, error){
		"redis-lua": func() (loadtest.BaselineStore, error) {
			u := os.Getenv("REVGUARD_TEST_REDIS_URL")
			if u == "" {
				return nil, nil
			}
			return loadtest.NewRedisBaseline(u, 16)
		},
		"postgres": func() (loadtest.BaselineStore, error) {
			u := os.Getenv("REVGUARD_TEST_POSTGRES_URL")
			if u == "" {
				return nil, nil
			}
			return loadtest.NewPostgresBaseline(u, 16), nil
		},
	}
	for _, name := range []string{"redis-lua", "postgres"} {
		b.Run(name, func(b *testing.B) {
			store, err := stores[name]()
			if err != nil {
				b.Fatal(err)
			}
			if store == nil {
				b.Skipf("no URL for %s", name)
			}
			ctx := b.Context()
			if err := store.Setup(ctx, 1_000_000_000, 1); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				// b.Context() is cancelled before the clean-ups run.
				if err := store.Close(context.Background()); err != nil {
					b.Error(err)
				}
			})
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					code, err := store.Reserve(ctx, fmt.Sprintf("c%d", n.Add(1)), 1)
					if err != nil || code != "" {
						b.Errorf("reserve: %q, %v", code, err)
						return
					}
				}
			})
		})
	}
}
