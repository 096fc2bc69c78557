package redis_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// BenchmarkRateLimiterAllow measures Allow from many goroutines: all on one hot key (a
// crowd behind one address: every call is a script on one Redis key) and spread over
// 10,000 keys. Each Allow is one round trip to Redis.
func BenchmarkRateLimiterAllow(b *testing.B) {
	c := sessMustClient(b, "")
	for _, keys := range []int{1, 10_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			l := rlMustLimiter(c, sessNamespace(b, c), "ip", revguard.Rate{N: 100, Per: time.Second}, nil)
			names := make([]string, keys)
			for i := range names {
				names[i] = fmt.Sprintf("198.51.%d.%d", i/256, i%256)
			}
			b.SetParallelism(8) // 8 goroutines per core: requests in flight, as from a crowd
			var next atomic.Int64
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)) * 7919
				for pb.Next() {
					if _, _, err := l.Allow(context.Background(), names[i%keys]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "allows/s")
		})
	}
}
