package redis_test

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"
)

// rlMustLimiter returns a limiter of r named name in namespace ns, on the clock now (nil:
// Redis's TIME).
func rlMustLimiter(c goredis.UniversalClient, ns, name string, r revguard.Rate, now func() time.Time) *redis.RateLimiter {
	l := redis.NewRateLimiter(c, name, r)
	l.Namespace = ns
	l.Now = now
	return l
}

// rlMustFleet returns n limiters of r, each on a client of its own (n nodes), sharing
// one namespace and the clock now.
func rlMustFleet(tb testing.TB, n int, r revguard.Rate, now func() time.Time) ([]*redis.RateLimiter, *goredis.Client, string) {
	tb.Helper()
	admin := sessMustClient(tb, "")
	ns := sessNamespace(tb, admin)
	var ls []*redis.RateLimiter
	for range n {
		ls = append(ls, rlMustLimiter(sessMustClient(tb, ""), ns, "customer", r, now))
	}
	return ls, admin, ns
}

func rlAllow(tb testing.TB, l revguard.RateLimiter, key string) (bool, time.Duration) {
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

// TestRateLimiterBurstAndRefill is inproc's test of the same name: the same semantics,
// with retryAfter rounded up to the microsecond.
func TestRateLimiterBurstAndRefill(t *testing.T) {
	c := sessMustClient(t, "")
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
			clk := revguardtest.NewClock(time.Time{})
			l := rlMustLimiter(c, sessNamespace(t, c), "customer", tt.rate, clk.Now)
			for i := range tt.rate.N {
				if ok, _ := rlAllow(t, l, "c-1"); !ok {
					t.Fatalf("request %d of a burst of %d refused", i+1, tt.rate.N)
				}
			}
			ok, wait := rlAllow(t, l, "c-1")
			if ok {
				t.Fatalf("request %d allowed, want a burst of at most %d", tt.rate.N+1, tt.rate.N)
			}
			if d := wait - tt.step; d < 0 || d > time.Microsecond {
				t.Errorf("retryAfter = %v, want %v", wait, tt.step)
			}
			clk.Advance(wait - time.Millisecond)
			if ok, wait2 := rlAllow(t, l, "c-1"); ok || wait2 > time.Millisecond+time.Microsecond {
				t.Fatalf("1ms early: allowed %v, retryAfter %v; want refused with at most 1ms to go", ok, wait2)
			}
			clk.Advance(time.Millisecond)
			if ok, _ := rlAllow(t, l, "c-1"); !ok {
				t.Fatal("refused at retryAfter")
			}
			if ok, _ := rlAllow(t, l, "c-1"); ok {
				t.Fatal("two requests allowed for one refilled token")
			}
			clk.Advance(100 * tt.rate.Per)
			n := 0
			for {
				if ok, _ := rlAllow(t, l, "c-1"); !ok {
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

// TestRateLimiterRefusalChangesNothing: a bucket hammered by refused requests allows the
// same requests at the same times as one left alone.
func TestRateLimiterRefusalChangesNothing(t *testing.T) {
	c := sessMustClient(t, "")
	clk := revguardtest.NewClock(time.Time{})
	r := revguard.Rate{N: 5, Per: time.Second}
	l := rlMustLimiter(c, sessNamespace(t, c), "ip", r, clk.Now)
	for range r.N {
		rlAllow(t, l, "hammered")
		rlAllow(t, l, "quiet")
	}
	for range 100 {
		if ok, _ := rlAllow(t, l, "hammered"); ok {
			t.Fatal("an empty bucket allowed a request")
		}
	}
	for step := range 30 {
		clk.Advance(37 * time.Millisecond)
		okH, waitH := rlAllow(t, l, "hammered")
		okQ, waitQ := rlAllow(t, l, "quiet")
		if okH != okQ || waitH != waitQ {
			t.Fatalf("step %d: hammered bucket (%v, %v) differs from quiet one (%v, %v)", step, okH, waitH, okQ, waitQ)
		}
		for range 5 {
			rlAllow(t, l, "hammered")
		}
	}
}

// TestRateLimiterKeysAreIndependent: keys, long (hashed) keys and limiters of other
// names each have a bucket of their own.
func TestRateLimiterKeysAreIndependent(t *testing.T) {
	c := sessMustClient(t, "")
	ns := sessNamespace(t, c)
	clk := revguardtest.NewClock(time.Time{})
	r := revguard.Rate{N: 1, Per: time.Minute}
	customers := rlMustLimiter(c, ns, "customer", r, clk.Now)
	ips := rlMustLimiter(c, ns, "ip", r, clk.Now)
	long := strings.Repeat("x", 200)
	keys := []string{"k", "k ", "#k", "=k", long + "a", long + "b", strings.Repeat("é", 128)}
	for i := range 20 {
		keys = append(keys, fmt.Sprint("ip-", i))
	}
	for _, l := range []*redis.RateLimiter{customers, ips} {
		for _, k := range keys {
			if ok, _ := rlAllow(t, l, k); !ok {
				t.Fatalf("key %q refused on its first request", k)
			}
		}
	}
	for _, k := range keys {
		if ok, _ := rlAllow(t, customers, k); ok {
			t.Fatalf("second request of %q allowed", k)
		}
	}
	got, err := c.Keys(t.Context(), ns+":rl:*").Result()
	if err != nil || len(got) != 2*len(keys) {
		t.Fatalf("%d bucket keys (%v), want %d", len(got), err, 2*len(keys))
	}
	for _, k := range got {
		if len(k) > len(ns)+len(":rl:customer:#")+43 {
			t.Fatalf("bucket key %q: a long key is not hashed", k)
		}
	}
}

func TestRateLimiterOff(t *testing.T) {
	l := redis.NewRateLimiter(nil, "ip", revguard.Rate{}) // no client: it must not be used
	for range 10 {
		if ok, _ := rlAllow(t, l, "k"); !ok {
			t.Fatal("an off limiter refused")
		}
	}
}

// TestRateLimiterBucketExpires: a bucket's key lives only until the bucket is full
// again (plus a second's slack), with Redis's own clock.
func TestRateLimiterBucketExpires(t *testing.T) {
	c := sessMustClient(t, "")
	ns := sessNamespace(t, c)
	l := rlMustLimiter(c, ns, "ip", revguard.Rate{N: 10, Per: time.Second}, nil)
	for range 3 {
		rlAllow(t, l, "203.0.113.9")
	}
	ttl, err := c.PTTL(t.Context(), ns+":rl:ip:=203.0.113.9").Result()
	if err != nil || ttl <= time.Second || ttl > 1300*time.Millisecond {
		t.Fatalf("bucket TTL %v (%v), want 300ms to refill plus 1s", ttl, err)
	}
}

// rlModel is the specification as exact rational arithmetic: tokens refill at N per
// Per up to N; a request takes a whole token when there is one.
type rlModel struct {
	r      revguard.Rate
	tokens *big.Rat
	last   time.Time
}

func (m *rlModel) allow(now time.Time) (bool, time.Duration) {
	rate := big.NewRat(int64(m.r.N), m.r.Per.Microseconds()) // tokens per µs
	if m.tokens == nil {
		m.tokens, m.last = big.NewRat(int64(m.r.N), 1), now
	}
	if now.After(m.last) {
		refill := new(big.Rat).Mul(rate, big.NewRat(now.Sub(m.last).Microseconds(), 1))
		m.tokens.Add(m.tokens, refill)
		if full := big.NewRat(int64(m.r.N), 1); m.tokens.Cmp(full) > 0 {
			m.tokens = full
		}
		m.last = now
	}
	one := big.NewRat(1, 1)
	if m.tokens.Cmp(one) >= 0 {
		m.tokens.Sub(m.tokens, one)
		return true, 0
	}
	need := new(big.Rat).Quo(new(big.Rat).Sub(one, m.tokens), rate) // µs
	us := new(big.Int).Div(new(big.Int).Add(need.Num(), new(big.Int).Sub(need.Denom(), big.NewInt(1))), need.Denom())
	return false, time.Duration(us.Int64()) * time.Microsecond
}

// TestRateLimiterMatchesModel walks three nodes sharing a bucket through random
// requests and pauses (µs clock) and compares every answer with the exact model.
func TestRateLimiterMatchesModel(t *testing.T) {
	for _, r := range []revguard.Rate{{N: 3, Per: time.Second}, {N: 7, Per: time.Minute}, {N: 1, Per: time.Second}} {
		t.Run(r.String(), func(t *testing.T) {
			clk := revguardtest.NewClock(time.Time{})
			nodes, _, _ := rlMustFleet(t, 3, r, clk.Now)
			m := &rlModel{r: r}
			rng := rand.New(rand.NewPCG(1, uint64(r.N)))
			step := r.Per.Microseconds() / int64(r.N)
			for i := range 300 {
				if rng.IntN(3) == 0 {
					clk.Advance(time.Duration(rng.Int64N(2*step+1)) * time.Microsecond)
				}
				ok, wait := rlAllow(t, nodes[rng.IntN(len(nodes))], "shared")
				wantOK, wantWait := m.allow(clk.Now())
				if ok != wantOK || wait != wantWait {
					t.Fatalf("request %d at %v: got (%v, %v), model says (%v, %v)",
						i, clk.Now(), ok, wait, wantOK, wantWait)
				}
			}
		})
	}
}

// TestRateLimiterFleetConcurrent: three nodes, each with eight goroutines, hammer one
// key on a frozen clock: exactly N requests pass; after m token intervals exactly m
// more pass, never more, however the calls interleave.
func TestRateLimiterFleetConcurrent(t *testing.T) {
	r := revguard.Rate{N: 20, Per: time.Second}
	clk := revguardtest.NewClock(time.Time{})
	nodes, _, _ := rlMustFleet(t, 3, r, clk.Now)
	round := func(calls int) int64 {
		var granted atomic.Int64
		var wg sync.WaitGroup
		for _, l := range nodes {
			for range 8 {
				wg.Go(func() {
					for range calls {
						ok, _, err := l.Allow(context.Background(), "crowd")
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							granted.Add(1)
						}
					}
				})
			}
		}
		wg.Wait()
		return granted.Load()
	}
	if got := round(5); got != int64(r.N) {
		t.Fatalf("burst: %d granted by 120 calls, want exactly %d", got, r.N)
	}
	for _, m := range []int{1, 7, 20} {
		clk.Advance(time.Duration(m) * r.Per / time.Duration(r.N))
		if got := round(2); got != int64(m) {
			t.Fatalf("after %d intervals: %d granted, want exactly %d", m, got, m)
		}
	}
}

// TestRateLimiterFleetRedisTime: three nodes on Redis's clock, hammered for a second,
// grant in total at most N + N×elapsed/Per, elapsed measured by Redis's TIME before the
// first call and after the last: the bound holds whatever the nodes' own clocks say.
func TestRateLimiterFleetRedisTime(t *testing.T) {
	r := revguard.Rate{N: 50, Per: time.Second}
	nodes, admin, _ := rlMustFleet(t, 3, r, nil)
	ctx := t.Context()
	t0, err := admin.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var granted, refused atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(time.Second)
	for _, l := range nodes {
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					ok, _, err := l.Allow(ctx, "crowd")
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						granted.Add(1)
					} else {
						refused.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	t1, err := admin.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	elapsed := t1.Sub(t0).Microseconds()
	limit := int64(r.N) + elapsed*int64(r.N)/r.Per.Microseconds()
	t.Logf("%d granted, %d refused in %dµs; the rate allows at most %d", granted.Load(), refused.Load(), elapsed, limit)
	if granted.Load() > limit {
		t.Fatalf("%d granted in %dµs, more than the %d the rate allows", granted.Load(), elapsed, limit)
	}
	if granted.Load() < int64(r.N) || refused.Load() == 0 {
		t.Fatalf("%d granted, %d refused: want at least the burst granted and some refused", granted.Load(), refused.Load())
	}
}

// TestRateLimiterClockBehind: a node whose clock is behind the bucket's last change
// gets no tokens back: a bucket's time never goes backwards.
func TestRateLimiterClockBehind(t *testing.T) {
	c := sessMustClient(t, "")
	ns := sessNamespace(t, c)
	r := revguard.Rate{N: 2, Per: time.Second}
	ahead := revguardtest.NewClock(revguardtest.ClockStart.Add(10 * time.Second))
	behind := revguardtest.NewClock(revguardtest.ClockStart)
	la := rlMustLimiter(c, ns, "ip", r, ahead.Now)
	lb := rlMustLimiter(c, ns, "ip", r, behind.Now)
	rlAllow(t, la, "k")
	rlAllow(t, la, "k")
	if ok, wait := rlAllow(t, lb, "k"); ok || wait != 500*time.Millisecond {
		t.Fatalf("node behind: (%v, %v), want refused with 500ms to go on the bucket's clock", ok, wait)
	}
	behind.Advance(10*time.Second + 500*time.Millisecond)
	if ok, _ := rlAllow(t, lb, "k"); !ok {
		t.Fatal("refused once its clock passed the refill")
	}
}
