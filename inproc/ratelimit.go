package inproc

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/revenueguard/revguard"
)

// rateShards spreads the buckets over independent locks so that different keys rarely
// contend.
const rateShards = 64

// minSweep is the size a shard must reach before it sweeps idle buckets at all.
const minSweep = 64

// RateLimiter is an in-memory revguard.RateLimiter: one token bucket per key
// (golang.org/x/time/rate), refilled at Rate.N tokens per Rate.Per and holding at most
// Rate.N, as docs/api.md defines the --rate-limit flags.
//
// Memory is bounded by the keys active within the last Rate.Per: a bucket left alone
// for that long is full again, indistinguishable from a new one, so it is dropped. Each
// shard sweeps its full buckets when it has doubled in size since its last sweep, so
// the cost is amortised over insertions and there is no background goroutine.
//
// A refused request changes nothing: Allow consumes a token only when one is there.
type RateLimiter struct {
	// Now is the clock; NewRateLimiter sets time.Now.
	Now func() time.Time

	rate   revguard.Rate
	limit  rate.Limit
	seed   maphash.Seed
	shards [rateShards]rateShard
}

// rateShard is a part of the buckets. Its mutex guards the map and each bucket in it;
// a bucket's own mutex (inside rate.Limiter) is only ever taken under it.
type rateShard struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	sweepAt int // sweep when len(buckets) reaches this
	_       [40]byte
}

var _ revguard.RateLimiter = (*RateLimiter)(nil)

// NewRateLimiter returns a RateLimiter for r. With r off, Allow always allows.
func NewRateLimiter(r revguard.Rate) *RateLimiter {
	l := &RateLimiter{Now: time.Now, rate: r, seed: maphash.MakeSeed()}
	if !r.Off() {
		l.limit = rate.Limit(float64(r.N) / r.Per.Seconds())
	}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*rate.Limiter)
		l.shards[i].sweepAt = minSweep
	}
	return l
}

// Rate returns the limiter's rate.
func (l *RateLimiter) Rate() revguard.Rate { return l.rate }

// Allow takes one token from key's bucket. When the bucket is empty it returns false and
// the time until the next token, without changing the bucket. It never fails.
func (l *RateLimiter) Allow(_ context.Context, key string) (bool, time.Duration, error) {
	if l.rate.Off() {
		return true, 0, nil
	}
	s := &l.shards[maphash.String(l.seed, key)%rateShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	// The clock is read under the shard's lock, so that each bucket sees time move
	// forward only: x/time/rate rewinds a bucket given an earlier time than its last, and
	// the interval would then be refilled twice.
	now := l.Now()
	b, ok := s.buckets[key]
	if !ok {
		if len(s.buckets) >= s.sweepAt {
			l.sweep(s, now)
		}
		b = rate.NewLimiter(l.limit, l.rate.N)
		s.buckets[key] = b
	}
	// AllowN takes a token only when one is available now; otherwise it leaves the
	// bucket exactly as it was. (A Reservation would take it and Cancel would give it
	// back only approximately when refusals overlap.)
	if b.AllowN(now, 1) {
		return true, 0, nil
	}
	return false, l.wait(b.TokensAt(now)), nil
}

// wait is the time until a bucket holding tokens has one whole token.
func (l *RateLimiter) wait(tokens float64) time.Duration {
	d := time.Duration(math.Ceil((1 - tokens) / float64(l.limit) * float64(time.Second)))
	return max(d, time.Nanosecond)
}

// sweep drops the full buckets of s, then sets the size at which it sweeps next: twice
// what is left, so that sweeping costs O(1) per insertion. Called with s.mu held.
func (l *RateLimiter) sweep(s *rateShard, now time.Time) {
	full := float64(l.rate.N)
	for key, b := range s.buckets {
		if b.TokensAt(now) >= full {
			delete(s.buckets, key)
		}
	}
	s.sweepAt = max(2*len(s.buckets), minSweep)
}

// Sweep drops every full bucket now. Allow sweeps on its own as keys come and go; Sweep
// is for a caller that wants memory back after a burst of keys that will not return.
func (l *RateLimiter) Sweep() {
	now := l.Now()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		l.sweep(s, now)
		s.mu.Unlock()
	}
}

// Len reports how many buckets are held, full or not.
func (l *RateLimiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}
