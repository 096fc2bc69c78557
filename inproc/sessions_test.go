package inproc_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/revguardtest"
)

// memStore is a small revguard.Sessions that counts its calls and lets a test stall or
// fail its reads.
type memStore struct {
	now func() time.Time

	finds, creates, deletes atomic.Int64

	mu       sync.Mutex
	sessions map[[32]byte]revguard.Session
	// afterRead, when set, runs inside FindSession after the answer was read and before
	// it is returned: a test blocks there to race a revocation against a read.
	afterRead func()
	// failNext makes the next FindSession calls fail with this error.
	failNext []error
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{now: now, sessions: make(map[[32]byte]revguard.Session)}
}

func (m *memStore) CreateSession(_ context.Context, customerID string, ttl time.Duration) (string, revguard.Session, error) {
	m.creates.Add(1)
	if ttl == 0 {
		ttl = revguard.DefaultSessionTTL
	}
	if !revguard.ValidCustomerID(customerID) || ttl < revguard.MinSessionTTL || ttl > revguard.MaxSessionTTL {
		return "", revguard.Session{}, revguard.Errorf(revguard.CodeInvalidRequest, "invalid session")
	}
	tok := revguard.NewSessionToken()
	now := m.now()
	s := revguard.Session{CustomerID: customerID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[revguard.HashSessionToken(tok)] = s
	return tok, s, nil
}

func (m *memStore) FindSession(_ context.Context, token string) (revguard.Session, error) {
	m.finds.Add(1)
	m.mu.Lock()
	if len(m.failNext) > 0 {
		err := m.failNext[0]
		m.failNext = m.failNext[1:]
		m.mu.Unlock()
		return revguard.Session{}, err
	}
	s, ok := m.sessions[revguard.HashSessionToken(token)]
	hook := m.afterRead
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
	if !ok || !m.now().Before(s.ExpiresAt) {
		return revguard.Session{}, revguard.Errorf(revguard.CodeUnauthenticated, "unknown or expired session")
	}
	return s, nil
}

func (m *memStore) DeleteSession(_ context.Context, token string) error {
	m.deletes.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, revguard.HashSessionToken(token))
	return nil
}

func (m *memStore) setAfterRead(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.afterRead = f
}

// MustNewSessionCache returns a cache over a fresh memStore on a fake clock.
func MustNewSessionCache(tb testing.TB) (*inproc.SessionCache, *memStore, *fakeClock) {
	tb.Helper()
	clk := newFakeClock()
	store := newMemStore(clk.Now)
	c := inproc.NewSessionCache(store)
	c.Now = clk.Now
	tb.Cleanup(func() { c.Close() })
	return c, store, clk
}

func mustCreate(tb testing.TB, s revguard.Sessions, ttl time.Duration) string {
	tb.Helper()
	tok, _, err := s.CreateSession(context.Background(), "c-42", ttl)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func wantCode(tb testing.TB, what string, err error, code revguard.Code) {
	tb.Helper()
	if got := revguard.ErrorCode(err); got != code {
		tb.Fatalf("%s: %v (code %q), want code %q", what, err, got, code)
	}
}

// TestSessionCacheConformance runs the Sessions conformance suite through the cache.
func TestSessionCacheConformance(t *testing.T) {
	revguardtest.TestSessions(t, func(tb testing.TB, now func() time.Time) revguard.Sessions {
		c := inproc.NewSessionCache(newMemStore(now))
		c.Now = now
		tb.Cleanup(func() { c.Close() })
		return c
	})
}

func TestSessionCacheHitCostsNoStoreRead(t *testing.T) {
	c, store, _ := MustNewSessionCache(t)
	ctx := t.Context()
	// Created through the cache: cached at once.
	tok := mustCreate(t, c, time.Hour)
	// Created behind the cache's back: read once, then cached.
	other := mustCreate(t, store, time.Hour)
	for range 1000 {
		for _, tk := range []string{tok, other} {
			if s, err := c.FindSession(ctx, tk); err != nil || s.CustomerID != "c-42" {
				t.Fatalf("FindSession = %+v, %v", s, err)
			}
		}
	}
	if got := store.finds.Load(); got != 1 {
		t.Fatalf("store reads = %d for 2000 lookups of 2 sessions (one created through the cache), want 1", got)
	}
	if got := c.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}
}

func TestSessionCacheLogoutAtOnce(t *testing.T) {
	for _, negative := range []time.Duration{inproc.DefaultNegativeTTL, 0} {
		t.Run(fmt.Sprint("NegativeTTL=", negative), func(t *testing.T) {
			c, store, _ := MustNewSessionCache(t)
			c.NegativeTTL = negative
			ctx := t.Context()
			tok := mustCreate(t, c, time.Hour)
			if _, err := c.FindSession(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleteSession(ctx, tok); err != nil {
				t.Fatal(err)
			}
			for range 10 {
				_, err := c.FindSession(ctx, tok)
				wantCode(t, "FindSession after logout", err, revguard.CodeUnauthenticated)
			}
			wantReads := int64(0) // refused from memory
			if negative == 0 {
				wantReads = 10
			}
			if got := store.finds.Load(); got != wantReads {
				t.Errorf("store reads after logout = %d, want %d", got, wantReads)
			}
			if c.Len() != 0 {
				t.Errorf("Len = %d after logout, want 0", c.Len())
			}
		})
	}
}

func TestSessionCacheExpiry(t *testing.T) {
	t.Run("ExpiresAt", func(t *testing.T) {
		c, store, clk := MustNewSessionCache(t)
		c.TTL = time.Hour
		tok := mustCreate(t, c, time.Minute)
		clk.Advance(time.Minute - time.Nanosecond)
		if _, err := c.FindSession(t.Context(), tok); err != nil {
			t.Fatalf("1ns before expiry: %v", err)
		}
		if got := store.finds.Load(); got != 0 {
			t.Fatalf("store reads = %d before expiry, want 0", got)
		}
		clk.Advance(time.Nanosecond)
		_, err := c.FindSession(t.Context(), tok)
		wantCode(t, "FindSession at ExpiresAt", err, revguard.CodeUnauthenticated)
	})
	t.Run("TTLCap", func(t *testing.T) {
		c, store, clk := MustNewSessionCache(t)
		c.TTL = 10 * time.Second
		tok := mustCreate(t, c, time.Hour)
		clk.Advance(10*time.Second - time.Nanosecond)
		if _, err := c.FindSession(t.Context(), tok); err != nil || store.finds.Load() != 0 {
			t.Fatalf("within TTL: %v, store reads %d; want a hit", err, store.finds.Load())
		}
		clk.Advance(time.Nanosecond)
		if _, err := c.FindSession(t.Context(), tok); err != nil || store.finds.Load() != 1 {
			t.Fatalf("at TTL: %v, store reads %d; want one store read", err, store.finds.Load())
		}
		// A session revoked behind the cache's back is seen within TTL.
		store.DeleteSession(t.Context(), tok)
		clk.Advance(10 * time.Second)
		_, err := c.FindSession(t.Context(), tok)
		wantCode(t, "FindSession of a session revoked in the store, after TTL", err, revguard.CodeUnauthenticated)
	})
}

func TestSessionCacheNegative(t *testing.T) {
	c, store, clk := MustNewSessionCache(t)
	ctx := t.Context()
	bogus := revguard.NewSessionToken()
	for range 100 {
		_, err := c.FindSession(ctx, bogus)
		wantCode(t, "FindSession(unknown)", err, revguard.CodeUnauthenticated)
	}
	if got := store.finds.Load(); got != 1 {
		t.Fatalf("store reads = %d for 100 lookups of one unknown token, want 1", got)
	}
	clk.Advance(inproc.DefaultNegativeTTL)
	_, err := c.FindSession(ctx, bogus)
	wantCode(t, "FindSession(unknown) after NegativeTTL", err, revguard.CodeUnauthenticated)
	if got := store.finds.Load(); got != 2 {
		t.Fatalf("store reads = %d after NegativeTTL, want 2", got)
	}
	_, err = c.FindSession(ctx, "")
	wantCode(t, "FindSession(empty)", err, revguard.CodeUnauthenticated)
	if got := store.finds.Load(); got != 2 {
		t.Errorf("an empty token cost a store read")
	}
}

// TestSessionCacheRandomTokenFlood checks that a flood of made-up tokens neither evicts
// live sessions nor makes them cost store reads.
func TestSessionCacheRandomTokenFlood(t *testing.T) {
	c, store, _ := MustNewSessionCache(t)
	ctx := t.Context()
	live := make([]string, 100)
	for i := range live {
		live[i] = mustCreate(t, c, time.Hour)
	}
	for range 15000 { // more than the refused-token cache holds
		c.FindSession(ctx, revguard.NewSessionToken())
	}
	before := store.finds.Load()
	for _, tok := range live {
		if _, err := c.FindSession(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := store.finds.Load() - before; got != 0 {
		t.Fatalf("after a flood of random tokens, %d of %d live sessions needed a store read", got, len(live))
	}
}

func TestSessionCacheStoreErrorNotCached(t *testing.T) {
	c, store, _ := MustNewSessionCache(t)
	tok := mustCreate(t, store, time.Hour)
	boom := errors.New("disk on fire")
	store.mu.Lock()
	store.failNext = []error{boom}
	store.mu.Unlock()
	if _, err := c.FindSession(t.Context(), tok); !errors.Is(err, boom) {
		t.Fatalf("FindSession with a failing store = %v, want %v", err, boom)
	}
	if _, err := c.FindSession(t.Context(), tok); err != nil {
		t.Fatalf("FindSession after the store recovered: %v", err)
	}
	if got := store.finds.Load(); got != 2 {
		t.Errorf("store reads = %d, want 2: a store failure must not be cached", got)
	}
}

// TestSessionCacheRevocationRacesRead stalls a store read that saw the session valid,
// revokes the session meanwhile, then lets the read finish: the stale answer must not
// be cached, and lookups after the revocation must not join the stale read.
func TestSessionCacheRevocationRacesRead(t *testing.T) {
	c, store, _ := MustNewSessionCache(t)
	c.NegativeTTL = 0 // prove it without the help of the refused-token cache
	ctx := t.Context()
	tok := mustCreate(t, store, time.Hour) // not cached
	entered, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	store.setAfterRead(func() {
		if first.CompareAndSwap(false, true) { // stall the first read only
			close(entered)
			<-release
		}
	})
	stale := make(chan error, 1)
	go func() {
		_, err := c.FindSession(ctx, tok)
		stale <- err
	}()
	<-entered // the read has seen the session valid
	if err := c.DeleteSession(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// After the revocation returned: refused, without waiting for the stalled read.
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.FindSession(ctx2, tok)
	wantCode(t, "FindSession after DeleteSession returned", err, revguard.CodeUnauthenticated)

	close(release)
	if err := <-stale; err != nil {
		t.Logf("the read that began before the revocation answered %v", err)
	}
	if c.Len() != 0 {
		t.Fatalf("Len = %d: the stale read was cached", c.Len())
	}
	_, err = c.FindSession(ctx, tok)
	wantCode(t, "FindSession after the stale read finished", err, revguard.CodeUnauthenticated)
}

// TestSessionCacheSharedLoad checks that concurrent misses of one token cost one store
// read, and that a caller who gives up does not stop the others from getting the answer.
func TestSessionCacheSharedLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, store, _ := MustNewSessionCache(t)
		defer c.Close() // stop otter's ticker before the bubble ends
		tok := mustCreate(t, store, time.Hour)
		release := make(chan struct{})
		store.setAfterRead(func() { <-release })

		impatient, cancel := context.WithCancel(t.Context())
		impatientErr := make(chan error, 1)
		go func() {
			_, err := c.FindSession(impatient, tok)
			impatientErr <- err
		}()
		synctest.Wait() // the first caller is inside the store read
		var wg sync.WaitGroup
		errs := make([]error, 50)
		for i := range errs {
			wg.Go(func() { _, errs[i] = c.FindSession(t.Context(), tok) })
		}
		synctest.Wait() // everyone waits for the one read
		cancel()
		if err := <-impatientErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("the impatient caller got %v, want context.Canceled", err)
		}
		close(release)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("caller %d: %v", i, err)
			}
		}
		if got := store.finds.Load(); got != 1 {
			t.Fatalf("store reads = %d for 51 concurrent misses, want 1", got)
		}
		if _, err := c.FindSession(t.Context(), tok); err != nil || store.finds.Load() != 1 {
			t.Fatalf("after the shared read: %v, store reads %d; want a hit", err, store.finds.Load())
		}
	})
}

// TestSessionCacheStress mixes creates, lookups and revocations from many goroutines,
// then checks every token: revoked ones are refused, the others found, from memory.
func TestSessionCacheStress(t *testing.T) {
	c, store, _ := MustNewSessionCache(t)
	ctx := t.Context()
	const workers, perWorker = 8, 200
	type result struct {
		tok     string
		revoked bool
	}
	results := make([][]result, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				tok := mustCreateNoFatal(t, c)
				for range 3 {
					if _, err := c.FindSession(ctx, tok); err != nil {
						t.Errorf("FindSession of a live session: %v", err)
					}
				}
				revoked := i%3 == 0
				if revoked {
					if err := c.DeleteSession(ctx, tok); err != nil {
						t.Error(err)
					}
					if _, err := c.FindSession(ctx, tok); revguard.ErrorCode(err) != revguard.CodeUnauthenticated {
						t.Errorf("FindSession right after DeleteSession: %v", err)
					}
				}
				results[w] = append(results[w], result{tok, revoked})
			}
		})
	}
	wg.Wait()
	reads := store.finds.Load()
	for _, rs := range results {
		for _, r := range rs {
			_, err := c.FindSession(ctx, r.tok)
			if r.revoked {
				wantCode(t, "revoked token", err, revguard.CodeUnauthenticated)
			} else if err != nil {
				t.Fatalf("live token: %v", err)
			}
		}
	}
	if got := store.finds.Load() - reads; got != 0 {
		t.Errorf("the final check of %d tokens cost %d store reads, want 0", workers*perWorker, got)
	}
}

func mustCreateNoFatal(t *testing.T, s revguard.Sessions) string {
	tok, _, err := s.CreateSession(context.Background(), "c-1", time.Hour)
	if err != nil {
		t.Error(err)
	}
	return tok
}

// BenchmarkSessionCacheFindSession measures a cache hit from parallel goroutines over
// 10,000 cached sessions; the store-reads metric must stay 0.
func BenchmarkSessionCacheFindSession(b *testing.B) {
	store := newMemStore(time.Now)
	c := inproc.NewSessionCache(store)
	b.Cleanup(func() { c.Close() })
	toks := make([]string, 10000)
	for i := range toks {
		toks[i] = mustCreate(b, c, time.Hour)
	}
	var seed atomic.Uint64
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		for pb.Next() {
			i++
			if _, err := c.FindSession(ctx, toks[i%len(toks)]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(store.finds.Load()), "store-reads")
}

// TestSessionCacheServesADrop: a crowd logs in during the minutes before a drop and
// everyone's first request at the opening is served from memory, with the cache's
// defaults: 20,000 sessions (a stand-in for the headline's million, which the default
// size holds) issued over 5 minutes, then read once each.
func TestSessionCacheServesADrop(t *testing.T) {
	c, store, clk := MustNewSessionCache(t)
	if c.TTL != inproc.DefaultSessionCacheTTL || inproc.DefaultMaxCachedSessions < 1_000_000 {
		t.Fatalf("defaults: TTL %v, size %d; want DefaultSessionCacheTTL and at least 1,000,000", c.TTL, inproc.DefaultMaxCachedSessions)
	}
	tokens := make([]string, 20_000)
	for i := range tokens {
		tokens[i] = mustCreate(t, c, time.Hour)
		if i%1000 == 999 {
			clk.Advance(15 * time.Second) // 20 steps: 5 minutes of logins
		}
	}
	for _, tok := range tokens {
		if _, err := c.FindSession(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := store.finds.Load(); got != 0 {
		t.Fatalf("%d of %d first requests read the store; want all served from memory", got, len(tokens))
	}
}
