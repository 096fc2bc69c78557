package redis_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard/redis"
)

// TestNodes: two nodes report their health; List shows both, the one that is not
// ready with its reason; a node that stops gracefully leaves the list at once, one
// whose reports stop (it died) after Stale, and a dead node's entry is deleted an hour
// after its last report.
func TestNodes(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ns := newNamespace(t, c)
	var mu sync.Mutex
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	node := func(name string, ready error) *redis.Nodes {
		return &redis.Nodes{Client: c, Namespace: ns, Name: name, Every: 20 * time.Millisecond, Stale: time.Second, Now: clock,
			Ready: func(context.Context) error { return ready }}
	}
	a, b := node("node-a", nil), node("node-b", errors.New("the ledger is not ready"))
	a.Stats = func() any { return map[string]int{"created": 7} }
	actx, stopA := context.WithCancel(t.Context())
	bctx, stopB := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(actx) })
	wg.Go(func() { b.Run(bctx) })
	defer func() { stopA(); stopB(); wg.Wait() }()

	list := func() []redis.NodeHealth {
		t.Helper()
		got, err := a.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// waitFor polls List until ok (each Run reports every 20 ms).
	waitFor := func(what string, ok func([]redis.NodeHealth) bool) []redis.NodeHealth {
		t.Helper()
		for range 500 {
			if got := list(); ok(got) {
				return got
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s: the list is still %+v", what, list())
		return nil
	}
	got := waitFor("both nodes", func(l []redis.NodeHealth) bool { return len(l) == 2 })
	if got[0].Name != "node-a" || !got[0].Ready || got[0].Detail != "" ||
		got[1].Name != "node-b" || got[1].Ready || got[1].Detail != "the ledger is not ready" {
		t.Fatalf("nodes %+v", got)
	}
	// Stats travel with the report as JSON; a node without them reports none.
	if string(got[0].Stats) != `{"created":7}` || got[1].Stats != nil {
		t.Fatalf("stats %s and %s; want {\"created\":7} and none", got[0].Stats, got[1].Stats)
	}

	// A graceful stop removes the entry.
	stopB()
	waitFor("node-b gone after its stop", func(l []redis.NodeHealth) bool {
		return len(l) == 1 && l[0].Name == "node-a"
	})

	// A node that died: its last report stays, shown until Stale, then hidden, then
	// deleted after an hour.
	dead, _ := json.Marshal(redis.NodeHealth{Name: "node-dead", Ready: true, At: clock()})
	if err := c.HSet(t.Context(), ns+":nodes", "node-dead", dead).Err(); err != nil {
		t.Fatal(err)
	}
	if names := nodeNames(list()); !slices.Equal(names, []string{"node-a", "node-dead"}) {
		t.Fatalf("with a fresh report of node-dead: %v", names)
	}
	stopA()
	wg.Wait()
	advance(2 * time.Second)
	if names := nodeNames(list()); len(names) != 0 {
		t.Fatalf("2s after the last reports: %v; want none (node-a stopped, node-dead stale)", names)
	}
	if n, err := c.HExists(t.Context(), ns+":nodes", "node-dead").Result(); err != nil || !n {
		t.Fatalf("node-dead's entry deleted before an hour: %v %v", n, err)
	}
	advance(time.Hour)
	list()
	if n, err := c.HExists(t.Context(), ns+":nodes", "node-dead").Result(); err != nil || n {
		t.Fatalf("node-dead's entry kept past an hour: %v %v", n, err)
	}
}

func nodeNames(l []redis.NodeHealth) []string {
	var names []string
	for _, h := range l {
		names = append(names, h.Name)
	}
	return names
}
