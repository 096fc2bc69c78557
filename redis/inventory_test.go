package redis_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/storetest"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"

	goredis "github.com/redis/go-redis/v9"
)

// redisURL returns the shared test server's URL, skipping the test when
// REVGUARD_TEST_REDIS_URL is unset, or failing it when REVGUARD_TEST_REQUIRE_ALL=1.
func redisURL(tb testing.TB) string {
	tb.Helper()
	return storetest.RedisURL(tb)
}

// MustDial connects to url with redis.Dial and closes the client at the end of the test.
func MustDial(tb testing.TB, url string) goredis.UniversalClient {
	tb.Helper()
	c, err := redis.Dial(tb.Context(), url)
	if err != nil {
		tb.Fatalf("Dial(%s): %v", url, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// newNamespace returns a namespace no other test uses, and deletes its keys at the
// end of the test: the shared server is never flushed.
func newNamespace(tb testing.TB, c goredis.UniversalClient) string {
	tb.Helper()
	ns := storetest.NewName("rgt")
	tb.Cleanup(func() { deleteNamespace(tb, c, ns) })
	return ns
}

// deleteNamespace deletes every key of the namespace ns: "<ns>:…" and "{<ns>:…".
func deleteNamespace(tb testing.TB, c goredis.UniversalClient, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := redis.DeleteNamespace(ctx, c, ns); err != nil {
		tb.Logf("delete namespace %s: %v", ns, err)
	}
}

// MustOpenInventory opens an Inventory of namespace ns on c, after edit (may be nil),
// and closes it at the end of the test.
func MustOpenInventory(tb testing.TB, c goredis.UniversalClient, ns string, edit func(*redis.Inventory)) *redis.Inventory {
	tb.Helper()
	inv := redis.NewInventory(c)
	inv.Namespace = ns
	inv.Logger = slog.New(slog.DiscardHandler)
	if edit != nil {
		edit(inv)
	}
	if err := inv.Open(tb.Context()); err != nil {
		tb.Fatalf("open inventory: %v", err)
	}
	tb.Cleanup(func() {
		if err := inv.Close(); err != nil {
			tb.Errorf("close inventory: %v", err)
		}
	})
	return inv
}

func TestInventory(t *testing.T) {
	c := MustDial(t, redisURL(t))
	revguardtest.TestInventory(t, func(tb testing.TB, clock *revguardtest.Clock) revguard.Inventory {
		return MustOpenInventory(tb, c, newNamespace(tb, c), func(inv *redis.Inventory) { inv.Now = clock.Now })
	})
}

// TestClaimIdempotent: one mark per customer and key at a time, free again once
// released; and a key's mark is never another key's binding (keys may hold colons: the
// mark of "x" was once the binding of "x:flight").
func TestClaimIdempotent(t *testing.T) {
	c := MustDial(t, redisURL(t))
	ctx := t.Context()
	inv := MustOpenInventory(t, c, newNamespace(t, c), nil)
	if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 5, HoldSeconds: 600}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "s", CustomerID: "c", Quantity: 1, IdempotencyKey: "x:flight"}); err != nil {
		t.Fatal(err)
	}
	release, mine, bound, err := inv.ClaimIdempotent(ctx, "c", "x")
	if err != nil || !mine || bound {
		t.Fatalf("claim of x beside a bound x:flight = mine %v, bound %v, %v; want mine, unbound", mine, bound, err)
	}
	if _, again, _, err := inv.ClaimIdempotent(ctx, "c", "x"); err != nil || again {
		t.Fatalf("a second claim of x while marked = %v, %v; want not mine", again, err)
	}
	if _, other, _, err := inv.ClaimIdempotent(ctx, "d", "x"); err != nil || !other {
		t.Fatalf("another customer's x = %v, %v; want mine", other, err)
	}
	release()
	if _, again, _, err := inv.ClaimIdempotent(ctx, "c", "x"); err != nil || !again {
		t.Fatalf("a claim of x after the release = %v, %v; want mine", again, err)
	}
	// The binding of x:flight is intact: another SKU with it is still refused.
	if _, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "s2", CustomerID: "c", Quantity: 1, IdempotencyKey: "x:flight"}); revguard.ErrorCode(err) != revguard.CodeIdempotencyKeyReused {
		t.Fatalf("x:flight on another SKU after x's marks: %v, want idempotency_key_reused", err)
	}
	if _, _, bound, err := inv.ClaimIdempotent(ctx, "c", "x:flight"); err != nil || !bound {
		t.Fatalf("claim of the bound x:flight: bound %v, %v; want bound", bound, err)
	}
}

// TestInventory_ReadOnly checks the read-only Open of export and verify: a namespace
// no deployment has opened is an error and stays empty; an opened one is read with
// its own shard count, and refuses changes.
func TestInventory_ReadOnly(t *testing.T) {
	ctx := t.Context()
	c := MustDial(t, redisURL(t))
	ns := newNamespace(t, c)
	ro := redis.NewInventory(c)
	ro.Namespace, ro.ReadOnly = ns, true
	if err := ro.Open(ctx); err == nil || !strings.Contains(err.Error(), "no deployment") {
		t.Fatalf("read-only Open of an unused namespace: %v", err)
	}
	if n, err := c.Exists(ctx, ns+":meta").Result(); err != nil || n != 0 {
		t.Fatalf("the read-only Open stored the namespace's settings: %d, %v", n, err)
	}

	rw := MustOpenInventory(t, c, ns, func(inv *redis.Inventory) { inv.Shards = 4 })
	if _, _, err := rw.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 1, HoldSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	ro = MustOpenInventory(t, c, ns, func(inv *redis.Inventory) { inv.ReadOnly = true })
	if ro.Shards != 4 {
		t.Errorf("read-only Open: %d shards, want the namespace's 4", ro.Shards)
	}
	if sku, err := ro.FindSKU(ctx, "s"); err != nil || sku.Stock != 5 {
		t.Errorf("read-only FindSKU: %+v, %v", sku, err)
	}
	if _, _, err := ro.Reserve(ctx, revguard.ReserveRequest{SKU: "s", CustomerID: "c", Quantity: 1}); err == nil {
		t.Error("a read-only inventory reserved")
	}
}
