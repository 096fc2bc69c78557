package redis_test

import (
	"context"
	"fmt"
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

// sessMustStartCluster starts a Redis Cluster of three masters of the test's own (no
// replicas), each serving a third of the slots, and returns their addresses once every
// node sees the cluster as ok.
func sessMustStartCluster(tb testing.TB) []string {
	tb.Helper()
	const masters = 3
	var addrs []string
	var admins []*goredis.Client
	for i := range masters {
		srv := sessMustStartServer(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
		addrs = append(addrs, srv.addr)
		c := goredis.NewClient(&goredis.Options{Addr: srv.addr})
		tb.Cleanup(func() { c.Close() })
		admins = append(admins, c)
		lo, hi := i*16384/masters, (i+1)*16384/masters-1
		if err := c.ClusterAddSlotsRange(context.Background(), lo, hi).Err(); err != nil {
			tb.Fatalf("CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, srv.addr, err)
		}
	}
	for _, addr := range addrs[1:] {
		host, port, _ := strings.Cut(addr, ":")
		if err := admins[0].ClusterMeet(context.Background(), host, port).Err(); err != nil {
			tb.Fatalf("CLUSTER MEET %s: %v", addr, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < masters; {
		info, err := admins[i].ClusterInfo(context.Background()).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") &&
			strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", masters)) {
			i++
			continue
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the cluster is not ok after 20s: %s: %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addrs
}

// sessMustClusterClient returns a cluster client of addrs, closed at cleanup.
func sessMustClusterClient(tb testing.TB, addrs []string) *goredis.ClusterClient {
	tb.Helper()
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	tb.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			tb.Fatal("the cluster client cannot reach the cluster")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// TestSessionsCluster runs Sessions and RateLimiter on a Redis Cluster: three nodes
// (each with its own cluster client) share sessions whose keys fall on every master,
// logouts reach every node within a second (PUBLISH from a script is broadcast over
// the cluster bus, whatever master the subscriber is connected to), and three limiters
// sharing keys grant exactly the rate.
func TestSessionsCluster(t *testing.T) {
	addrs := sessMustStartCluster(t)
	var nodes []*redis.Sessions
	var limiters []*redis.RateLimiter
	clk := revguardtest.NewClock(time.Time{})
	r := revguard.Rate{N: 10, Per: time.Second}
	for range 3 {
		c := sessMustClusterClient(t, addrs)
		nodes = append(nodes, sessMustOpen(t, c, "rg", nil))
		limiters = append(limiters, rlMustLimiter(c, "rg", "ip", r, clk.Now))
	}
	ctx := t.Context()

	t.Run("Sessions", func(t *testing.T) {
		toks := make([]string, 12) // 12 random hashes: keys on every master
		for i := range toks {
			toks[i] = sessMustCreate(t, nodes[i%3], fmt.Sprint("c-", i))
		}
		for i, tok := range toks {
			for _, n := range nodes {
				sessMustFind(t, n, tok, fmt.Sprint("c-", i))
			}
		}
		// Listen as the nodes do: on the channel's master.
		ps := sessMustClusterClient(t, addrs).Subscribe(ctx, "rg:revoked")
		defer ps.Close()
		if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		for i, tok := range toks {
			if err := nodes[i%3].DeleteSession(ctx, tok); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for _, n := range nodes {
				sessUntilRefused(t, n, tok, start, sessRevocationBound)
			}
		}
		// Each logout is announced twice: by the script on the session's master
		// (broadcast over the cluster bus) and directly on the channel's master.
		got := map[string]int{}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for range 2 * len(toks) {
			msg, err := ps.ReceiveMessage(rctx)
			if err != nil {
				t.Fatalf("revocation messages: %v", err)
			}
			got[msg.Payload]++
		}
		for _, tok := range toks {
			h := revguard.HashSessionToken(tok)
			if n := got[sessHashKey(h)]; n != 2 {
				t.Errorf("revocation of one session announced %d times, want 2", n)
			}
		}
	})

	t.Run("RateLimiter", func(t *testing.T) {
		keys := []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"}
		var granted [4]atomic.Int64
		var wg sync.WaitGroup
		for _, l := range limiters {
			for range 4 {
				wg.Go(func() {
					for i := range 40 {
						k := i % len(keys)
						ok, _, err := l.Allow(context.Background(), keys[k])
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							granted[k].Add(1)
						}
					}
				})
			}
		}
		wg.Wait()
		for k := range keys {
			if got := granted[k].Load(); got != int64(r.N) {
				t.Errorf("key %s: %d granted on a frozen clock, want exactly %d", keys[k], got, r.N)
			}
		}
	})
}
