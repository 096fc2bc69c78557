package inproc_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
)

// fakeClock is an injectable clock shared by goroutines.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// MustNewRateLimiter returns a limiter for r on a fake clock.
func MustNewRateLimiter(tb testing.TB, r revguard.Rate) (*inproc.RateLimiter, *fakeClock) {
	tb.Helper()
	clk := newFakeClock()
	l := inproc.NewRateLimiter(r)
	l.Now = clk.Now
	return l, clk
}

func allow(tb testing.TB, l *inproc.RateLimiter, key string) (bool, time.Duration) {
	tb.Helper()
	ok, wait, err := l.Allow(context.Background(), key)
	if err != nil {
		tb.Fatalf("Allow(%q): %v", key, err)
	}
	if ok != (wait == 0) {
		tb.Fatalf("Allow(%q) = %v, %v: retryAfter must be set exactly when refused", key, ok, wait)
	}
	return ok, wait
}

func TestRateLimiterBurstAndRefill(t *testing.T) {
	for _, tt := range []struct {
		rate revguard.Rate
		step time.Duration // time for one token
	}{
		{revguard.Rate{N: 3, Per: time.Second}, time.Second / 3},
		{revguard.Rate{N: 10, Per: time.Minute}, 6 * time.Second},
		{revguard.Rate{N: 1, Per: time.Second}, time.Second},
		{revguard.Rate{N: 100, Per: time.Second}, 10 * time.Millisecond},
	} {
		t.Run(tt.rate.String(), func(t *testing.T) {
			l, clk := MustNewRateLimiter(t, tt.rate)
			for i := range tt.rate.N {
				if ok, _ := allow(t, l, "c-1"); !ok {
					t.Fatalf("request %d of a burst of %d refused", i+1, tt.rate.N)
				}
			}
			ok, wait := allow(t, l, "c-1")
			if ok {
				t.Fatalf("request %d allowed, want a burst of at most %d", tt.rate.N+1, tt.rate.N)
			}
			if d := wait - tt.step; d < 0 || d > time.Microsecond {
				t.Errorf("retryAfter = %v, want %v", wait, tt.step)
			}
			// Just before the token is there: still refused.
			clk.Advance(wait - time.Millisecond)
			if ok, wait2 := allow(t, l, "c-1"); ok || wait2 > time.Millisecond+time.Microsecond {
				t.Fatalf("1ms early: allowed %v, retryAfter %v; want refused with at most 1ms to go", ok, wait2)
			}
			clk.Advance(time.Millisecond)
			if ok, _ := allow(t, l, "c-1"); !ok {
				t.Fatal("refused at retryAfter")
			}
			if ok, _ := allow(t, l, "c-1"); ok {
				t.Fatal("two requests allowed for one refilled token")
			}
			// A long pause refills at most N tokens.
			clk.Advance(100 * tt.rate.Per)
			n := 0
			for {
				if ok, _ := allow(t, l, "c-1"); !ok {
					break
				}
				n++
			}
			if n != tt.rate.N {
				t.Fatalf("after a long pause %d requests allowed, want the bucket size %d", n, tt.rate.N)
			}
		})
	}
}

// TestRateLimiterRefusalChangesNothing compares a bucket hammered by refused requests
// with one left alone: they allow the same requests at the same times.
func TestRateLimiterRefusalChangesNothing(t *testing.T) {
	r := revguard.Rate{N: 5, Per: time.Second}
	l, clk := MustNewRateLimiter(t, r)
	for range r.N {
		allow(t, l, "hammered")
		allow(t, l, "quiet")
	}
	for range 1000 {
		if ok, _ := allow(t, l, "hammered"); ok {
			t.Fatal("an empty bucket allowed a request")
		}
	}
	for step := range 50 {
		clk.Advance(37 * time.Millisecond)
		okH, waitH := allow(t, l, "hammered")
		okQ, waitQ := allow(t, l, "quiet")
		if okH != okQ || waitH != waitQ {
			t.Fatalf("step %d: hammered bucket (%v, %v) differs from quiet one (%v, %v)", step, okH, waitH, okQ, waitQ)
		}
		for range 10 {
			allow(t, l, "hammered") // more refusals in between
		}
	}
}

func TestRateLimiterKeysAreIndependent(t *testing.T) {
	l, _ := MustNewRateLimiter(t, revguard.Rate{N: 1, Per: time.Minute})
	for i := range 100 {
		if ok, _ := allow(t, l, fmt.Sprint("ip-", i)); !ok {
			t.Fatalf("key %d refused on its first request", i)
		}
	}
	if ok, _ := allow(t, l, "ip-7"); ok {
		t.Fatal("second request of ip-7 allowed")
	}
}

func TestRateLimiterOff(t *testing.T) {
	l, _ := MustNewRateLimiter(t, revguard.Rate{})
	for range 10000 {
		if ok, _ := allow(t, l, "k"); !ok {
			t.Fatal("a limiter that is off refused")
		}
	}
	if l.Len() != 0 {
		t.Fatalf("Len = %d for a limiter that is off, want 0", l.Len())
	}
}

// TestRateLimiterEviction checks that memory follows the keys active within one period:
// idle full buckets go, and a bucket that is not full is never dropped (dropping it
// would hand out a fresh burst).
func TestRateLimiterEviction(t *testing.T) {
	r := revguard.Rate{N: 2, Per: time.Second}
	l, clk := MustNewRateLimiter(t, r)
	// A customer who used up the bucket.
	allow(t, l, "busy")
	allow(t, l, "busy")
	// A crowd of one-off keys, all within the same instant: none is full, none goes.
	const crowd = 10000
	for i := range crowd {
		allow(t, l, fmt.Sprint("once-", i))
	}
	if got := l.Len(); got != crowd+1 {
		t.Fatalf("Len = %d, want %d: buckets that are not full were dropped", got, crowd+1)
	}
	if ok, _ := allow(t, l, "busy"); ok {
		t.Fatal("the busy customer got a fresh burst")
	}
	// One period later every bucket is full again; a second crowd makes the shards sweep.
	clk.Advance(r.Per + time.Millisecond)
	for i := range crowd {
		allow(t, l, fmt.Sprint("twice-", i))
	}
	if got := l.Len(); got > crowd*3/2 {
		t.Fatalf("Len = %d after a second crowd of %d, want the idle buckets swept", got, crowd)
	}
	clk.Advance(r.Per + time.Millisecond)
	l.Sweep()
	if got := l.Len(); got != 0 {
		t.Fatalf("Len = %d after Sweep with every bucket full, want 0", got)
	}
}

// TestRateLimiterConcurrent hammers a few keys from many goroutines while time moves and
// the shards sweep, then checks the token-bucket bound for each key: allowed requests
// never exceed N + N*elapsed/Per.
func TestRateLimiterConcurrent(t *testing.T) {
	r := revguard.Rate{N: 50, Per: time.Second}
	l, clk := MustNewRateLimiter(t, r)
	const keys = 4
	var allowed [keys]atomic.Int64
	var wg sync.WaitGroup
	start := clk.Now()
	for g := range 8 {
		wg.Go(func() {
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 3000 {
				k := rng.IntN(keys)
				ok, wait, err := l.Allow(ctx, fmt.Sprint("hot-", k))
				if err != nil || ok != (wait == 0) {
					t.Errorf("Allow = %v, %v, %v", ok, wait, err)
					return
				}
				if ok {
					allowed[k].Add(1)
				}
				if i%7 == 0 {
					l.Allow(ctx, fmt.Sprint("cold-", g, "-", i)) // churn to trigger sweeps
				}
				if g == 0 && i%100 == 0 {
					clk.Advance(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	elapsed := clk.Now().Sub(start)
	bound := int64(r.N) + int64(float64(r.N)*elapsed.Seconds()+1e-9)
	total := int64(0)
	for k := range keys {
		got := allowed[k].Load()
		total += got
		if got > bound {
			t.Errorf("key %d: %d allowed in %v, bound %d", k, got, elapsed, bound)
		}
	}
	if total < int64(keys*r.N) {
		t.Errorf("only %d allowed in total, want at least the %d of the initial bursts", total, keys*r.N)
	}
}

// BenchmarkRateLimiterAllow measures Allow from parallel goroutines, each on its own
// keys (the per-customer case), and all on one key (one client hammering).
func BenchmarkRateLimiterAllow(b *testing.B) {
	for _, bc := range []struct {
		name string
		rate revguard.Rate
		keys int
	}{
		// A burst large enough for every iteration, refilled slowly enough that no bucket
		// is ever full (and swept) during the run.
		{"ManyKeys/Allowed", revguard.Rate{N: 1 << 20, Per: 365 * 24 * time.Hour}, 10000},
		{"ManyKeys/Refused", revguard.Rate{N: 1, Per: time.Minute}, 10000},
		{"OneKey/Allowed", revguard.Rate{N: 1 << 20, Per: 365 * 24 * time.Hour}, 1},
		{"OneKey/Refused", revguard.Rate{N: 1, Per: time.Minute}, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := inproc.NewRateLimiter(bc.rate)
			keys := make([]string, bc.keys)
			for i := range keys {
				keys[i] = fmt.Sprint("customer-", i)
			}
			var seed atomic.Uint64
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(7919))
				for pb.Next() {
					i++
					l.Allow(ctx, keys[i%len(keys)])
				}
			})
			b.ReportMetric(float64(l.Len()), "buckets")
		})
	}
}
