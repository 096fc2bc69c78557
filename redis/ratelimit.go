package redis

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
)

// DefaultRateLimitTimeout bounds each Redis call of a RateLimiter.
const DefaultRateLimitTimeout = time.Second

// rlMaxRawKey: longer keys are hashed into the bucket's name.
const rlMaxRawKey = 64

// rlMaxExact is 2^53, below which Lua's doubles hold integers exactly.
const rlMaxExact = 1 << 53

//go:embed lua/ratelimit.lua
var rlScriptSource string

// rlScript is immutable: its source and SHA-1. Run sends EVALSHA and falls back to EVAL
// on a server (or Cluster node) that does not have it yet.
var rlScript = goredis.NewScript(rlScriptSource)

// RateLimiter is a revguard.RateLimiter whose buckets live in Redis, so that a fleet of
// nodes shares them: whatever node a request reaches, all of them together grant at most
// Rate.N per Rate.Per per key, with a burst of Rate.N, exactly as inproc.RateLimiter does
// in one process.
//
// Each Allow is one script call on one key (lua/ratelimit.lua: GCRA, in exact integer
// arithmetic), <Namespace>:rl:<name>:=<key>, or :#<base64url SHA-256 of key> for a key
// longer than 64 bytes; the two forms cannot collide. The time is Redis's TIME, one clock
// for the whole fleet, unless Now is set (tests). A bucket's key expires once the bucket
// would be full again, so memory is bounded by the keys active within the last Per.
//
// Every node must be configured with the same rate for a name: a bucket's state is
// meaningful only for its rate.
type RateLimiter struct {
	// Namespace prefixes every key; NewRateLimiter sets "rg".
	Namespace string

	// Now, when set, is the clock passed to the script instead of Redis's TIME. Leave it
	// nil in production: nodes' clocks differ, Redis's is one for all.
	Now func() time.Time

	// Timeout bounds each Redis call; NewRateLimiter sets DefaultRateLimitTimeout.
	Timeout time.Duration

	client goredis.UniversalClient
	name   string
	rate   revguard.Rate
	per    int64 // rate.Per in µs
}

var _ revguard.RateLimiter = (*RateLimiter)(nil)

// NewRateLimiter returns a limiter of rate r on client (a single server or a Cluster).
// name separates limiters that share a namespace, such as "customer" and "ip", whose
// keys could otherwise meet. With r off, Allow always allows without calling Redis.
func NewRateLimiter(client goredis.UniversalClient, name string, r revguard.Rate) *RateLimiter {
	return &RateLimiter{
		Namespace: "rg",
		Timeout:   DefaultRateLimitTimeout,
		client:    client,
		name:      name,
		rate:      r,
		per:       r.Per.Microseconds(),
	}
}

// Rate returns the limiter's rate.
func (l *RateLimiter) Rate() revguard.Rate { return l.rate }

// Allow takes one token from key's bucket. When the bucket is empty it returns false and
// the time until the next token (rounded up to the microsecond), changing nothing. It
// fails with CodeUnavailable when Redis cannot be reached.
func (l *RateLimiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	if l.rate.Off() {
		return true, 0, nil
	}
	n := int64(l.rate.N)
	if n < 1 || l.per < 1 || n > rlMaxExact/l.per {
		return false, 0, fmt.Errorf("redis: rate limit: rate %d per %v out of range", l.rate.N, l.rate.Per)
	}
	now := ""
	if l.Now != nil {
		now = strconv.FormatInt(l.Now().UnixMicro(), 10)
	}
	timeout := l.Timeout
	if timeout <= 0 {
		timeout = DefaultRateLimitTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := rlScript.Run(ctx, l.client, []string{l.key(key)}, n, l.per, now).Int64Slice()
	if err != nil {
		return false, 0, sessStoreError("rate limit", "rate limiter", err)
	}
	if len(res) != 2 || res[0] != 0 && res[0] != 1 || res[1] < 0 {
		return false, 0, fmt.Errorf("redis: rate limit: unexpected script answer %v", res)
	}
	if res[0] == 1 {
		return true, 0, nil
	}
	wait := (res[1] + n - 1) / n // µs, rounded up
	return false, max(time.Duration(wait)*time.Microsecond, time.Microsecond), nil
}

// key is the bucket of k.
func (l *RateLimiter) key(k string) string {
	prefix := l.Namespace + ":rl:" + l.name + ":"
	if len(k) <= rlMaxRawKey {
		return prefix + "=" + k
	}
	h := sha256.Sum256([]byte(k))
	return prefix + "#" + base64.RawURLEncoding.EncodeToString(h[:])
}
