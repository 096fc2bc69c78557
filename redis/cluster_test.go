package redis_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"

	goredis "github.com/redis/go-redis/v9"
)

// startCluster starts a Redis Cluster of three masters (no replicas) on loopback
// ports, each in a directory of the test, and returns them once the cluster is up.
func startCluster(t *testing.T) []*testServer {
	t.Helper()
	redisServer(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not installed")
	}
	var nodes []*testServer
	var addrs []string
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
		if err := exec.Command("mkdir", "-p", dir).Run(); err != nil {
			t.Fatal(err)
		}
		s := startServer(t, dir, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000", "--appendonly", "no")
		nodes = append(nodes, s)
		addrs = append(addrs, s.Addr())
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must know the whole slot map before the tests start.
	waitFor(t, "the cluster to be ready", func() bool {
		for _, n := range nodes {
			c := goredis.NewClient(&goredis.Options{Addr: n.Addr()})
			info, err := c.ClusterInfo(context.Background()).Result()
			c.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				return false
			}
		}
		return true
	})
	return nodes
}

func TestCluster(t *testing.T) {
	nodes := startCluster(t)
	c := MustDial(t, nodes[1].URL())
	if _, ok := c.(*goredis.ClusterClient); !ok {
		t.Fatalf("Dial of a cluster node returned %T, want *goredis.ClusterClient", c)
	}

	t.Run("Conformance", func(t *testing.T) {
		// Three servers and the test share two cores: 200 goroutines per stress test
		// contend as hard for one SKU without running into the client's timeouts.
		revguardtest.TestInventoryWith(t, func(tb testing.TB, clock *revguardtest.Clock) revguard.Inventory {
			return MustOpenInventory(tb, c, newNamespace(tb, c), func(inv *redis.Inventory) { inv.Now = clock.Now })
		}, revguardtest.SuiteOptions{StressGoroutines: 200})
	})

	t.Run("ShardsOnEveryMaster", func(t *testing.T) {
		ns := newNamespace(t, c)
		inv := MustOpenInventory(t, c, ns, nil)
		ctx := t.Context()
		const n = 64
		for i := range n {
			if _, _, err := inv.PutSKU(ctx, fmt.Sprintf("spread-%d", i), revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 5, HoldSeconds: 60}); err != nil {
				t.Fatal(err)
			}
		}
		var masters atomic.Int32
		err := c.(*goredis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
			keys, err := m.Keys(ctx, "{"+ns+":*").Result()
			if len(keys) > 0 {
				masters.Add(1)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if masters.Load() != 3 {
			t.Fatalf("the shards' keys are on %d of 3 masters", masters.Load())
		}
		seen := 0
		if err := inv.ForEachSKU(ctx, func(s revguard.SKU) bool { seen++; return true }); err != nil || seen != n {
			t.Fatalf("ForEachSKU saw %d of %d SKUs: %v", seen, n, err)
		}
		warnings, err := redis.CheckDurability(ctx, c)
		if err != nil || len(warnings) != 3 {
			t.Fatalf("CheckDurability of 3 masters without AOF = %q, %v; want 3 warnings", warnings, err)
		}
	})

	t.Run("Outbox", func(t *testing.T) {
		ns := newNamespace(t, c)
		clock := revguardtest.NewClock(time.Time{})
		inv := MustOpenInventory(t, c, ns, func(inv *redis.Inventory) { inv.Now = clock.Now })
		ledger := newTestLedger()
		startOutbox(t, c, ns, ledger, nil)
		workload(t, inv, clock, "cl", 8)
		want := totalEvents(t, c, ns, redis.DefaultShards)
		waitFor(t, "the ledger to catch up", func() bool { n, _ := ledger.distinct(); return n == want })
		ledger.mustMatchInventory(t, inv)
	})
}
