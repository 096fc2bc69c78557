package redis_test

import (
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"
)

// TestWaitingRoom runs the conformance suite on the distributed room, over the Redis
// inventory of a namespace of its own, with four shards.
func TestWaitingRoom(t *testing.T) {
	c := MustDial(t, redisURL(t))
	revguardtest.TestWaitingRoom(t, func(tb testing.TB, clock *revguardtest.Clock) (revguard.Inventory, revguard.WaitingRoom) {
		inv := MustOpenInventory(tb, c, newNamespace(tb, c), func(inv *redis.Inventory) { inv.Now, inv.Shards = clock.Now, 4 })
		w := redis.NewWaitingRoom(inv)
		w.Tick = 0
		if err := w.Open(tb.Context()); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { w.Close() })
		return inv, w
	})
}
