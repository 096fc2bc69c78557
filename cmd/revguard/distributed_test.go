package main

import (
	"testing"

	"github.com/revenueguard/revguard/internal/storetest"
)

// fleetStores are a Redis namespace and a PostgreSQL schema of a test's own on the
// test servers (REVGUARD_TEST_REDIS_URL, REVGUARD_TEST_POSTGRES_URL), removed when the
// test ends, after the servers the test started on them have stopped.
type fleetStores struct {
	redisURL, postgresURL, namespace, schema string
}

// mustFleetStores returns a fleet's stores of the test's own; it skips the test without
// the test servers' URLs (fails it with REVGUARD_TEST_REQUIRE_ALL=1).
func mustFleetStores(tb testing.TB) *fleetStores {
	tb.Helper()
	f := &fleetStores{redisURL: storetest.RedisURL(tb), postgresURL: storetest.PostgresURL(tb)}
	f.namespace = storetest.Namespace(tb, f.redisURL)
	f.schema = storetest.Schema(tb, f.postgresURL)
	return f
}

// args returns the flags that point serve, verify or export at the stores.
func (f *fleetStores) args() []string {
	return []string{"--redis-url", f.redisURL, "--postgres-url", f.postgresURL,
		"--redis-namespace", f.namespace, "--postgres-schema", f.schema}
}

// env returns the same settings as REVGUARD_* variables, KEY=value.
func (f *fleetStores) env() []string {
	return []string{"REVGUARD_REDIS_URL=" + f.redisURL, "REVGUARD_POSTGRES_URL=" + f.postgresURL,
		"REVGUARD_REDIS_NAMESPACE=" + f.namespace, "REVGUARD_POSTGRES_SCHEMA=" + f.schema}
}

// mode is the storage mode an end-to-end test runs a server in.
type mode string

const (
	embeddedMode    mode = "embedded"
	distributedMode mode = "distributed"
)

// eachMode runs test as a subtest in each mode: the end-to-end suites drive an
// embedded server and a distributed node alike.
func eachMode(t *testing.T, test func(t *testing.T, m mode)) {
	for _, m := range []mode{embeddedMode, distributedMode} {
		t.Run(string(m), func(t *testing.T) { test(t, m) })
	}
}

// storeArgs returns the serve flags of mode m: none for embedded mode (the data dir
// is given anyway), a fleet's stores of the test's own for distributed mode.
func storeArgs(tb testing.TB, m mode) []string {
	if m == embeddedMode {
		return nil
	}
	return mustFleetStores(tb).args()
}
