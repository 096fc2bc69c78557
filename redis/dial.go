package redis

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Client settings of Dial, unless the URL sets them.
const (
	dialTimeout = 2 * time.Second
	ioTimeout   = 2 * time.Second
	poolTimeout = 3 * time.Second
	// A failed dial sent nothing, so it is safe to retry, but not for long: while
	// Redis is down, callers should get their 503 quickly.
	dialRetries   = 2
	dialRetryWait = 50 * time.Millisecond
)

// poolSize is the connections per client: a crowd's requests each hold one for a
// round trip, and the outbox holds one per shard while it waits for entries.
func poolSize() int { return max(128, 32*runtime.GOMAXPROCS(0)) }

// Dial connects to the Redis at url (redis://, rediss:// or unix://, with go-redis's
// query options) and checks that it answers. When the server is a node of a Redis
// Cluster it returns a *goredis.ClusterClient seeded from that address, which finds
// the other nodes itself; otherwise a *goredis.Client.
//
// Dial, read and write timeouts are bounded (2s unless the URL says otherwise), the
// pool is sized for a crowd, and commands are never retried by the client: re-sending
// a script whose answer was lost could apply it twice (a second hold), so a lost
// answer is reported (CodeUnavailable) and the API's client retries, with its
// idempotency key. The caller closes the client.
func Dial(ctx context.Context, url string) (goredis.UniversalClient, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: dial: %w", err)
	}
	opt.DialTimeout = orDuration(opt.DialTimeout, dialTimeout)
	opt.ReadTimeout = orDuration(opt.ReadTimeout, ioTimeout)
	opt.WriteTimeout = orDuration(opt.WriteTimeout, ioTimeout)
	opt.PoolTimeout = orDuration(opt.PoolTimeout, poolTimeout)
	if opt.PoolSize == 0 {
		opt.PoolSize = poolSize()
	}
	opt.MaxRetries = -1
	opt.DialerRetries, opt.DialerRetryTimeout = dialRetries, dialRetryWait
	opt.ContextTimeoutEnabled = true

	single := goredis.NewClient(opt)
	info, err := single.Info(ctx, "cluster").Result()
	if err != nil {
		single.Close()
		return nil, fmt.Errorf("redis: dial %s: %w", opt.Addr, storeErr("ping", err))
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		return single, nil
	}
	single.Close()
	cluster := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:                 []string{opt.Addr},
		Username:              opt.Username,
		Password:              opt.Password,
		TLSConfig:             opt.TLSConfig,
		DialTimeout:           opt.DialTimeout,
		ReadTimeout:           opt.ReadTimeout,
		WriteTimeout:          opt.WriteTimeout,
		PoolTimeout:           opt.PoolTimeout,
		PoolSize:              opt.PoolSize,
		MaxRetries:            -1,
		DialerRetries:         dialRetries,
		DialerRetryTimeout:    dialRetryWait,
		MaxRedirects:          -1, // see above: a MOVED answer reloads the slots, the caller retries
		ContextTimeoutEnabled: true,
	})
	if err := cluster.Ping(ctx).Err(); err != nil {
		cluster.Close()
		return nil, fmt.Errorf("redis: dial cluster at %s: %w", opt.Addr, storeErr("ping", err))
	}
	return cluster, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
