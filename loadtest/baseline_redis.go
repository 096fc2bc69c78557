package loadtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
)

// reserveScript takes units of one SKU in one atomic step, the way a shop would do it
// with Redis alone: check what is available and what the customer already has, then
// decrement and record the reservation.
//
// KEYS[1] available units, KEYS[2] hash customer → units, KEYS[3] list of reservations.
// ARGV[1] customer, ARGV[2] quantity, ARGV[3] per-customer limit.
var reserveScript = goredis.NewScript(`
local avail = tonumber(redis.call('GET', KEYS[1]))
if not avail then return 'sku_not_found' end
local qty = tonumber(ARGV[2])
if avail < qty then return 'sold_out' end
local have = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if have + qty > tonumber(ARGV[3]) then return 'limit_exceeded' end
redis.call('DECRBY', KEYS[1], qty)
redis.call('HINCRBY', KEYS[2], ARGV[1], qty)
redis.call('RPUSH', KEYS[3], ARGV[1] .. ' ' .. qty)
return 'ok'
`)

// RedisBaseline is a BaselineStore on Redis: a Lua script per reservation, called
// directly. Its keys share one hash tag, under the prefix loadtest_baseline:.
type RedisBaseline struct {
	client *goredis.Client
	keys   []string // available, customers, reservations
	limit  int64
}

var _ BaselineStore = (*RedisBaseline)(nil)

// NewRedisBaseline connects to the Redis at url (redis://host:port/db) with a pool of
// conns connections.
func NewRedisBaseline(url string, conns int) (*RedisBaseline, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis baseline: %w", err)
	}
	opt.PoolSize, opt.MinIdleConns = conns, 0
	tag := "{loadtest_baseline:" + randomHex(6) + "}"
	return &RedisBaseline{
		client: goredis.NewClient(opt),
		keys:   []string{"loadtest_baseline:" + tag + ":available", "loadtest_baseline:" + tag + ":customers", "loadtest_baseline:" + tag + ":reservations"},
	}, nil
}

// Name implements BaselineStore.
func (r *RedisBaseline) Name() string { return "redis-lua" }

// Keys returns the keys the baseline uses, for tests that check the clean-up.
func (r *RedisBaseline) Keys() []string { return r.keys }

// Setup implements BaselineStore.
func (r *RedisBaseline) Setup(ctx context.Context, stock, limit int64) error {
	r.limit = limit
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis baseline: ping: %w", err)
	}
	if err := r.client.Del(ctx, r.keys...).Err(); err != nil {
		return fmt.Errorf("redis baseline: clear keys: %w", err)
	}
	if err := r.client.Set(ctx, r.keys[0], stock, 0).Err(); err != nil {
		return fmt.Errorf("redis baseline: set stock: %w", err)
	}
	return reserveScript.Load(ctx, r.client).Err()
}

// Reserve implements BaselineStore.
func (r *RedisBaseline) Reserve(ctx context.Context, customerID string, qty int64) (revguard.Code, error) {
	res, err := reserveScript.Run(ctx, r.client, r.keys, customerID, qty, r.limit).Text()
	if err != nil {
		return "", fmt.Errorf("redis baseline: reserve: %w", err)
	}
	switch res {
	case "ok":
		return "", nil
	case "sold_out":
		return revguard.CodeSoldOut, nil
	case "limit_exceeded":
		return revguard.CodeLimitExceeded, nil
	}
	return "", fmt.Errorf("redis baseline: reserve: script answered %q", res)
}

// Audit implements BaselineStore: the reservations are read from the list, not from the
// per-customer counters that the script checks.
func (r *RedisBaseline) Audit(ctx context.Context) (int64, map[string]int64, error) {
	avail, err := r.client.Get(ctx, r.keys[0]).Int64()
	if err != nil {
		return 0, nil, fmt.Errorf("redis baseline: read available: %w", err)
	}
	list, err := r.client.LRange(ctx, r.keys[2], 0, -1).Result()
	if err != nil {
		return 0, nil, fmt.Errorf("redis baseline: read reservations: %w", err)
	}
	reserved := make(map[string]int64)
	for _, rec := range list {
		cust, q, ok := strings.Cut(rec, " ")
		n, err := strconv.ParseInt(q, 10, 64)
		if !ok || err != nil {
			return 0, nil, fmt.Errorf("redis baseline: bad reservation record %q", rec)
		}
		reserved[cust] += n
	}
	return avail, reserved, nil
}

// Close implements BaselineStore.
func (r *RedisBaseline) Close(ctx context.Context) error {
	err := r.client.Del(ctx, r.keys...).Err()
	if cerr := r.client.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("redis baseline: clean up: %w", err)
	}
	return nil
}
