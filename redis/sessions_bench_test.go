package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/revenueguard/revguard/redis"
)

// BenchmarkSessionsFindSession compares a cached FindSession (a hash and a map lookup)
// with one that reads Redis (cache off), each from many goroutines at once, as when a
// crowd holds sessions during a drop.
func BenchmarkSessionsFindSession(b *testing.B) {
	c := sessMustClient(b, "")
	for _, bc := range []struct {
		name   string
		cached bool
	}{{"cached", true}, {"uncached", false}} {
		b.Run(bc.name, func(b *testing.B) {
			s, _ := sessMustOpenWith(b, c, sessNamespace(b, c), func(s *redis.Sessions) {
				if !bc.cached {
					s.MaxCached = 0
				}
			})
			toks := make([]string, 256)
			for i := range toks {
				toks[i] = sessMustCreate(b, s, "crowd")
			}
			b.SetParallelism(8) // 8 goroutines per core: requests in flight, as from a crowd
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := s.FindSession(context.Background(), toks[i%len(toks)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "finds/s")
		})
	}
}
