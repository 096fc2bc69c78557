package loadtest_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/loadtest"
)

// MustEnvURL returns the test server URL in env, skipping the test when it is unset, or
// failing it when REVGUARD_TEST_REQUIRE_ALL=1.
func MustEnvURL(tb testing.TB, env string) string {
	tb.Helper()
	u := os.Getenv(env)
	if u == "" {
		if os.Getenv("REVGUARD_TEST_REQUIRE_ALL") == "1" {
			tb.Fatalf("%s is unset and REVGUARD_TEST_REQUIRE_ALL=1", env)
		}
		tb.Skipf("%s is unset: skipping the test against a real server", env)
	}
	return u
}

// baselineScenario: 300 customers with double clicks race for 100 units.
func baselineScenario() loadtest.Scenario {
	s := smallScenario()
	s.Customers, s.Stock, s.Bots = 300, 100, 0
	s.Connections = 16
	return s
}

// mustBaseline runs store with s and checks that the report has the three checks.
func mustBaseline(t *testing.T, store loadtest.BaselineStore, s loadtest.Scenario) *loadtest.BaselineReport {
	t.Helper()
	rep, err := (&loadtest.BaselineRunner{Scenario: s, Store: store}).Run(t.Context())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Checks) != 3 {
		t.Fatalf("checks %+v, want 3", rep.Checks)
	}
	return rep
}

// wantSoldOut checks a correct store's report: sold out exactly, nobody twice.
func wantSoldOut(t *testing.T, rep *loadtest.BaselineReport) {
	t.Helper()
	var b strings.Builder
	rep.WriteText(&b)
	if err := rep.Err(); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if rep.Reserved != 100 || rep.Available != 0 || rep.Operations != 600 {
		t.Errorf("reserved %d, available %d, operations %d: want 100, 0, 600\n%s", rep.Reserved, rep.Available, rep.Operations, b.String())
	}
}

func TestBaselineRedis(t *testing.T) {
	url := MustEnvURL(t, "REVGUARD_TEST_REDIS_URL")
	store, err := loadtest.NewRedisBaseline(url, 16)
	if err != nil {
		t.Fatal(err)
	}
	wantSoldOut(t, mustBaseline(t, store, baselineScenario()))

	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	if n, err := rdb.Exists(t.Context(), store.Keys()...).Result(); err != nil || n != 0 {
		t.Errorf("%d baseline keys left behind (%v)", n, err)
	}
}

func TestBaselinePostgres(t *testing.T) {
	url := MustEnvURL(t, "REVGUARD_TEST_POSTGRES_URL")
	store := loadtest.NewPostgresBaseline(url, 16)
	wantSoldOut(t, mustBaseline(t, store, baselineScenario()))

	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, tbl := range store.Tables() {
		var reg *string
		if err := conn.QueryRow(t.Context(), `SELECT to_regclass($1)::text`, tbl).Scan(&reg); err != nil || reg != nil {
			t.Errorf("table %s left behind (%v)", tbl, err)
		}
	}
}

// memStore is an in-memory baseline store, correct unless told otherwise.
type memStore struct {
	ignoreStock, ignoreLimit, loseRecord bool // loseRecord: the first reservation's record

	mu        sync.Mutex
	available int64
	limit     int64
	have      map[string]int64
	lost      map[string]int64 // the units of the lost record, still counted for the limit
	closed    bool
}

func (m *memStore) Name() string { return "mem" }

func (m *memStore) Setup(_ context.Context, stock, limit int64) error {
	m.available, m.limit, m.have, m.lost = stock, limit, make(map[string]int64), make(map[string]int64)
	return nil
}

func (m *memStore) Reserve(_ context.Context, c string, q int64) (revguard.Code, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.ignoreStock && m.available < q:
		return revguard.CodeSoldOut, nil
	case !m.ignoreLimit && m.have[c]+m.lost[c]+q > m.limit:
		return revguard.CodeLimitExceeded, nil
	}
	m.available -= q
	if m.loseRecord && len(m.lost) == 0 {
		m.lost[c] += q
		return "", nil
	}
	m.have[c] += q
	return "", nil
}

func (m *memStore) Audit(context.Context) (int64, map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.available, m.have, nil
}

func (m *memStore) Close(context.Context) error { m.closed = true; return nil }

func TestBaselineMem(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		m := &memStore{}
		wantSoldOut(t, mustBaseline(t, m, baselineScenario()))
		if !m.closed {
			t.Error("the store was not closed")
		}
	})
	for _, tc := range []struct {
		name  string
		store *memStore
		check string
		want  string
	}{
		{"ErrOversell", &memStore{ignoreStock: true}, loadtest.CheckOversell, "the stock is 100"},
		{"ErrLimit", &memStore{ignoreLimit: true}, loadtest.CheckLimit, "the limit is 1"},
		{"ErrLostRecord", &memStore{loseRecord: true}, loadtest.CheckOversell, "0 available and 99 reserved: the stock is 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := baselineScenario()
			if tc.check == loadtest.CheckLimit {
				s.Stock = 1000
			}
			rep := mustBaseline(t, tc.store, s)
			var b strings.Builder
			rep.WriteText(&b)
			line := "FAIL: baseline mem check " + tc.check + " broke: "
			if err := rep.Err(); err == nil || !strings.Contains(b.String(), line) || !strings.Contains(b.String(), tc.want) {
				t.Errorf("Err() = %v; want a line %q saying %q in:\n%s", err, line, tc.want, b.String())
			}
		})
	}
}

// TestBaselineRamp checks that the baseline follows the scenario's arrival pattern.
func TestBaselineRamp(t *testing.T) {
	s := baselineScenario()
	s.Arrival, s.Ramp = loadtest.ArrivalRamp, 300*time.Millisecond
	rep := mustBaseline(t, &memStore{}, s)
	if rep.Seconds < 0.28 {
		t.Errorf("a ramp of 300ms took %.3fs", rep.Seconds)
	}
	if err := rep.Err(); err != nil {
		t.Error(err)
	}
}
