package redis

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// CheckDurability reads the persistence settings of every master behind client and
// returns a warning for each setting under which Redis could lose holds it has
// acknowledged, or corrupt them: no AOF (a crash loses everything since the last
// snapshot); an AOF not synced on every write (appendfsync everysec loses up to a
// second of holds when the machine fails; no, more); an AOF loaded with
// aof-load-truncated yes (Redis 7.0 cuts a torn AOF after the last whole command of a
// script's incomplete MULTI rather than before it, so the next restart drops the
// plain writes made since and applies the torn script's first commands with the next
// script: a reservation its SKU does not count). It reads CONFIG GET, or INFO
// persistence where CONFIG is disabled or renamed (which tells neither the fsync
// policy nor aof-load-truncated: that is a warning too). The node prints the warnings
// at start. It fails only when a master cannot be read at all.
func CheckDurability(ctx context.Context, client goredis.UniversalClient) (warnings []string, err error) {
	var mu sync.Mutex
	check := func(ctx context.Context, c *goredis.Client) error {
		w, err := nodeDurability(ctx, c)
		mu.Lock()
		warnings = append(warnings, w...)
		mu.Unlock()
		return err
	}
	switch c := client.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, check)
	case *goredis.Client:
		err = check(ctx, c)
	default:
		return nil, fmt.Errorf("redis: check durability: unsupported client %T", client)
	}
	if err != nil {
		return warnings, fmt.Errorf("redis: check durability: %w", err)
	}
	return warnings, nil
}

// nodeDurability checks one server.
func nodeDurability(ctx context.Context, c *goredis.Client) ([]string, error) {
	addr := c.Options().Addr
	aof, fsync, truncated := "", "", ""
	cfg, err := c.ConfigGet(ctx, "append*").Result()
	if err == nil {
		aof, fsync = cfg["appendonly"], cfg["appendfsync"]
		lt, lerr := c.ConfigGet(ctx, "aof-load-truncated").Result()
		truncated = cmp.Or(lt["aof-load-truncated"], "unknown")
		if lerr != nil {
			truncated = "unknown (" + lerr.Error() + ")"
		}
	} else {
		// CONFIG is often disabled or renamed on managed servers: INFO tells whether
		// the AOF is on, not how often it is synced.
		info, ierr := c.Info(ctx, "persistence").Result()
		if ierr != nil {
			return nil, fmt.Errorf("%s: CONFIG GET: %v; INFO persistence: %w", addr, err, ierr)
		}
		aof = "no"
		if infoField(info, "aof_enabled") == "1" {
			aof = "yes"
		}
	}
	if aof != "yes" {
		return []string{fmt.Sprintf("redis %s: appendonly is %s: a crash of Redis loses every hold and sale "+
			"acknowledged since its last snapshot; set appendonly yes and appendfsync always", addr, cmp.Or(aof, "unknown"))}, nil
	}
	var warnings []string
	switch {
	case fsync == "":
		return []string{fmt.Sprintf("redis %s: the AOF is on but CONFIG is disabled, so its appendfsync and "+
			"aof-load-truncated are unknown: unless they are always and no, a crash can lose or corrupt acknowledged holds", addr)}, nil
	case fsync != "always":
		warnings = append(warnings, fmt.Sprintf("redis %s: appendfsync is %s: a crash of the machine can lose holds and sales "+
			"acknowledged in the last second or more; set appendfsync always", addr, fsync))
	}
	if truncated != "no" {
		warnings = append(warnings, fmt.Sprintf("redis %s: aof-load-truncated is %s: after a crash that tears the AOF "+
			"inside a script's transaction, Redis 7.0 keeps the torn transaction's MULTI, and the next restart drops "+
			"the plain writes made since or applies the torn script in part with the next one; unless your server has "+
			"the fix (Valkey pull request 4342), set aof-load-truncated no and repair a torn AOF with redis-check-aof --fix", addr, truncated))
	}
	return warnings, nil
}

// infoField returns the value of name in an INFO reply.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// Ping measures one round trip to Redis (to each master of a Cluster, reporting the
// slowest): the metric "Redis round-trip time".
func Ping(ctx context.Context, client goredis.UniversalClient) (time.Duration, error) {
	one := func(ctx context.Context, c goredis.UniversalClient) (time.Duration, error) {
		start := time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			return 0, storeErr("ping", err)
		}
		return time.Since(start), nil
	}
	cc, ok := client.(*goredis.ClusterClient)
	if !ok {
		return one(ctx, client)
	}
	var mu sync.Mutex
	var slowest time.Duration
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		d, err := one(ctx, c)
		mu.Lock()
		slowest = max(slowest, d)
		mu.Unlock()
		return err
	})
	return slowest, err
}
