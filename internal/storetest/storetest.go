// Package storetest gives the tests outside the adapters the shared Redis and
// PostgreSQL of the test environment (REVGUARD_TEST_REDIS_URL and
// REVGUARD_TEST_POSTGRES_URL), and a Redis namespace and a PostgreSQL schema of their
// own on them, removed when the test ends: several engineers' tests share the servers,
// so none flushes a database or drops a schema it did not make.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
)

// The environment variables that name the test servers.
const (
	RedisEnv    = "REVGUARD_TEST_REDIS_URL"
	PostgresEnv = "REVGUARD_TEST_POSTGRES_URL"
	RequireEnv  = "REVGUARD_TEST_REQUIRE_ALL" // "1": fail instead of skipping without them
)

// RedisURL returns the test Redis's URL. It skips the test when RedisEnv is unset, or
// fails it when RequireEnv is 1 (CI).
func RedisURL(tb testing.TB) string { return lookup(tb, RedisEnv, "redis://127.0.0.1:6379/0") }

// PostgresURL returns the test PostgreSQL's URL, skipping or failing as RedisURL does.
func PostgresURL(tb testing.TB) string {
	return lookup(tb, PostgresEnv, "'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'")
}

func lookup(tb testing.TB, env, example string) string {
	tb.Helper()
	u := os.Getenv(env)
	if u == "" {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("%s is unset and %s=1", env, RequireEnv)
		}
		tb.Skipf("%s is unset: skipping the distributed mode's test (for example %s=%s)", env, env, example)
	}
	return u
}

// NewName returns prefix followed by 12 random hex digits: a name no other test uses.
func NewName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Namespace returns a Redis namespace of the test's own on the Redis at url, whose keys
// are deleted when the test ends (after the cleanups registered later, such as the
// servers using it, have run).
func Namespace(tb testing.TB, url string) string {
	tb.Helper()
	ns := NewName("rgt")
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := redis.Dial(ctx, url)
		if err != nil {
			tb.Errorf("delete namespace %s: %v", ns, err)
			return
		}
		defer c.Close()
		if err := redis.DeleteNamespace(ctx, c, ns); err != nil {
			tb.Error(err)
		}
	})
	return ns
}

// Schema returns a PostgreSQL schema name of the test's own in the database at url,
// dropped when the test ends (after the cleanups registered later). The schema is
// created by the first DB that opens it.
func Schema(tb testing.TB, url string) string {
	tb.Helper()
	schema := NewName("revguard_test_")
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := postgres.DropSchema(ctx, url, schema); err != nil {
			tb.Error(err)
		}
	})
	return schema
}
