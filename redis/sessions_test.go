package redis_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"
)

// sessRedisURL returns REVGUARD_TEST_REDIS_URL, skipping the test when it is unset, or
// failing it when REVGUARD_TEST_REQUIRE_ALL=1.
func sessRedisURL(tb testing.TB) string {
	tb.Helper()
	const env = "REVGUARD_TEST_REDIS_URL"
	url := os.Getenv(env)
	if url == "" {
		if os.Getenv("REVGUARD_TEST_REQUIRE_ALL") == "1" {
			tb.Fatalf("%s is unset and REVGUARD_TEST_REQUIRE_ALL=1", env)
		}
		tb.Skipf("%s is unset: skipping the test against a real Redis", env)
	}
	return url
}

// sessMustClient returns a client of the shared test server, named name in CLIENT LIST
// (when not empty), that honours context deadlines. It is closed at cleanup.
func sessMustClient(tb testing.TB, name string) *goredis.Client {
	tb.Helper()
	opt, err := goredis.ParseURL(sessRedisURL(tb))
	if err != nil {
		tb.Fatalf("REVGUARD_TEST_REDIS_URL: %v", err)
	}
	return sessMustClientOpt(tb, opt, name)
}

func sessMustClientOpt(tb testing.TB, opt *goredis.Options, name string) *goredis.Client {
	tb.Helper()
	opt.ContextTimeoutEnabled = true
	opt.ClientName = name
	c := goredis.NewClient(opt)
	tb.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("redis at %s: %v", opt.Addr, err)
	}
	return c
}

// sessNamespace returns a namespace of its own for tb, whose keys are deleted at
// cleanup (the server is shared: nothing else is touched).
func sessNamespace(tb testing.TB, c goredis.UniversalClient) string {
	tb.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	ns := "rgtest-" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, ns+":*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			tb.Logf("clean up namespace %s: %v", ns, err)
		}
	})
	return ns
}

// sessMustOpen opens Sessions on c in namespace ns, closed at cleanup. now may be nil.
func sessMustOpen(tb testing.TB, c goredis.UniversalClient, ns string, now func() time.Time) *redis.Sessions {
	tb.Helper()
	s, _ := sessMustOpenWith(tb, c, ns, func(s *redis.Sessions) {
		if now != nil {
			s.Now = now
		}
	})
	return s
}

// sessMustOpenWith opens Sessions on c in namespace ns with the settings that set
// changes, closed at cleanup. It also returns what Sessions logs (shown when the test
// fails).
func sessMustOpenWith(tb testing.TB, c goredis.UniversalClient, ns string, set func(*redis.Sessions)) (*redis.Sessions, *sessLog) {
	tb.Helper()
	logs := &sessLog{}
	s := redis.NewSessions(c)
	s.Namespace = ns
	s.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if set != nil {
		set(s)
	}
	if err := s.Open(context.Background()); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		s.Close()
		if tb.Failed() && logs.String() != "" {
			tb.Logf("sessions log (namespace %s):\n%s", ns, logs)
		}
	})
	return s, logs
}

// sessLog collects log output written from several goroutines.
type sessLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *sessLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *sessLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sessCountGets counts the GET commands c sends from now on: a FindSession that sends
// none was served from the cache.
func sessCountGets(c *goredis.Client) *atomic.Int64 {
	n := new(atomic.Int64)
	c.AddHook(sessGetCounter{n})
	return n
}

type sessGetCounter struct{ n *atomic.Int64 }

func (sessGetCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h sessGetCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if cmd.Name() == "get" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (sessGetCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

// sessHashKey is a token hash as it appears in a session's key.
func sessHashKey(h [32]byte) string { return base64.RawURLEncoding.EncodeToString(h[:]) }

func sessWantCode(tb testing.TB, what string, err error, code revguard.Code) {
	tb.Helper()
	if got := revguard.ErrorCode(err); got != code {
		tb.Fatalf("%s: %v (code %q), want code %q", what, err, got, code)
	}
}

func sessMustCreate(tb testing.TB, s revguard.Sessions, customer string) string {
	tb.Helper()
	tok, _, err := s.CreateSession(context.Background(), customer, time.Hour)
	if err != nil {
		tb.Fatalf("CreateSession: %v", err)
	}
	return tok
}

func sessMustFind(tb testing.TB, s revguard.Sessions, tok, customer string) {
	tb.Helper()
	got, err := s.FindSession(context.Background(), tok)
	if err != nil {
		tb.Fatalf("FindSession: %v", err)
	}
	if got.CustomerID != customer {
		tb.Fatalf("FindSession: customer %q, want %q", got.CustomerID, customer)
	}
}

func TestSessions(t *testing.T) {
	c := sessMustClient(t, "")
	revguardtest.TestSessions(t, func(tb testing.TB, now func() time.Time) revguard.Sessions {
		return sessMustOpen(tb, c, sessNamespace(tb, c), now)
	})
}

// TestSessionsUncached runs the conformance suite with the cache off: Redis alone
// must behave the same.
func TestSessionsUncached(t *testing.T) {
	c := sessMustClient(t, "")
	revguardtest.TestSessions(t, func(tb testing.TB, now func() time.Time) revguard.Sessions {
		s, _ := sessMustOpenWith(tb, c, sessNamespace(tb, c), func(s *redis.Sessions) {
			s.Now = now
			s.MaxCached = 0
			s.NegativeTTL = 0
		})
		return s
	})
}

// TestSessionsStoredForm checks what is in Redis: the key is the token's hash, the
// value holds no token, and the key expires a little after the session.
func TestSessionsStoredForm(t *testing.T) {
	c := sessMustClient(t, "")
	ns := sessNamespace(t, c)
	s := sessMustOpen(t, c, ns, nil)
	ctx := t.Context()
	tok, _, err := s.CreateSession(ctx, "c-stored", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(ctx, ns+":sess:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("session keys %v, %v; want one", keys, err)
	}
	h := revguard.HashSessionToken(tok)
	if want := ns + ":sess:" + sessHashKey(h); keys[0] != want {
		t.Fatalf("key %q, want %q", keys[0], want)
	}
	v, err := c.Get(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, tok) || strings.Contains(keys[0], tok) {
		t.Fatal("the raw token is stored")
	}
	ttl, err := c.PTTL(ctx, keys[0]).Result()
	if err != nil || ttl <= 10*time.Minute || ttl > 12*time.Minute {
		t.Fatalf("key TTL %v (%v), want a little over the session's 10m", ttl, err)
	}
	if err := s.DeleteSession(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, keys[0]).Result(); err != nil || n != 0 {
		t.Fatalf("after DeleteSession the key exists: %d, %v", n, err)
	}
}

// TestSessionsCorruptRecord: a value Sessions did not write is an internal error, never
// a session.
func TestSessionsCorruptRecord(t *testing.T) {
	c := sessMustClient(t, "")
	ns := sessNamespace(t, c)
	s := sessMustOpen(t, c, ns, nil)
	tok := revguard.NewSessionToken()
	h := revguard.HashSessionToken(tok)
	if err := c.Set(t.Context(), ns+":sess:"+sessHashKey(h), "v1:1:2:", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.FindSession(t.Context(), tok)
	sessWantCode(t, "FindSession(corrupt record)", err, revguard.CodeInternal)
}

// TestSessionsLifecycle: Open starts one goroutine and Close stops it (no leak), Close
// is idempotent, a second Open is refused, and a closed Sessions still answers from
// Redis (its cache is no longer trusted).
func TestSessionsLifecycle(t *testing.T) {
	c := sessMustClient(t, "")
	ns := sessNamespace(t, c)
	ignore := goleak.IgnoreCurrent()
	s := redis.NewSessions(c)
	s.Namespace = ns
	if err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(t.Context()); err == nil {
		t.Fatal("a second Open succeeded")
	}
	tok := sessMustCreate(t, s, "c-life")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	goleak.VerifyNone(t, ignore)
	sessMustFind(t, s, tok, "c-life")
	if err := s.DeleteSession(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	_, err := s.FindSession(t.Context(), tok)
	sessWantCode(t, "FindSession after Close and DeleteSession", err, revguard.CodeUnauthenticated)
}
