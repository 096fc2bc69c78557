package inproc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/maypok86/otter/v2"
	"golang.org/x/sync/singleflight"

	"github.com/revenueguard/revguard"
)

// Defaults of a SessionCache.
const (
	// DefaultSessionCacheTTL caps how long a session stays cached. Revocations made
	// through the cache take effect at once; this bounds how long one made behind its
	// back (another process, an operator in the database) goes unseen. It is long
	// enough for a crowd that logs in during the minutes before a drop to be served
	// from memory when the drop opens: a session read from the store costs tens of
	// microseconds of CPU, the request's whole budget at a peak.
	DefaultSessionCacheTTL = 10 * time.Minute

	// DefaultNegativeTTL is how long a token the store refused is refused from memory.
	DefaultNegativeTTL = 5 * time.Second

	// DefaultMaxCachedSessions bounds the sessions held in memory: the headline drop's
	// crowd of a million, at about 225 bytes each (225 MB when all are cached).
	DefaultMaxCachedSessions = 1_000_000

	// maxNegative bounds the refused tokens held in memory.
	maxNegative = 10_000

	// sessionLoadTimeout bounds a store read shared by concurrent callers, which runs
	// detached from any one caller's context.
	sessionLoadTimeout = 5 * time.Second

	sessionStripes = 64
)

// SessionCache is a revguard.Sessions that keeps live sessions of another
// revguard.Sessions (the store: SQLite in embedded mode) in memory, so that a hot
// session costs no store read.
//
//   - Entries are keyed by the token's SHA-256 hash (revguard.HashSessionToken); the raw
//     token is never kept.
//   - A cached session is served only while Now is before both its ExpiresAt and the
//     moment it was cached plus TTL, so expiry is exact and the store is read again at
//     least every TTL.
//   - DeleteSession revokes at once: when it returns, no cache entry for the token is
//     left and none can be added by a store read that raced with it.
//   - Concurrent misses of one token share one store read (singleflight), so a crowd
//     arriving with a cold cache reads each session once.
//   - Refused tokens (CodeUnauthenticated from the store) are remembered for a short
//     NegativeTTL in a separate, small cache: a client retrying a revoked or expired
//     token does not hit the store each time, while a flood of random tokens can neither
//     grow memory past maxNegative entries nor evict live sessions. A refused token can
//     never become valid (tokens are 256-bit random and never reissued), so remembering
//     the refusal is safe; it is kept short only to bound memory.
type SessionCache struct {
	// TTL caps how long a session stays cached; NewSessionCache sets
	// DefaultSessionCacheTTL.
	TTL time.Duration

	// NegativeTTL is how long a refused token is refused from memory; NewSessionCache
	// sets DefaultNegativeTTL. Zero or less disables negative caching.
	NegativeTTL time.Duration

	// Now is the clock; NewSessionCache sets time.Now. Use the store's clock.
	Now func() time.Time

	store   revguard.Sessions
	live    *otter.Cache[[32]byte, cachedSession]
	refused *otter.Cache[[32]byte, time.Time] // value: until when the token is refused
	loads   singleflight.Group

	// stripes order cache fills against revocations, see fill and DeleteSession. A
	// stripe's mutex is a leaf lock: nothing else is locked while it is held, except
	// otter's internal locks inside Set and Invalidate.
	stripes [sessionStripes]stripe

	// warmMu makes Warm calls take turns.
	warmMu sync.Mutex
}

type stripe struct {
	mu      sync.Mutex
	gen     uint64                // incremented by every revocation of a token of this stripe
	revoked map[[32]byte]struct{} // while a Warm runs, the tokens revoked since it began; nil otherwise
	_       [40]byte
}

type cachedSession struct {
	s     revguard.Session
	until time.Time // min(s.ExpiresAt, cached at + TTL)
}

var _ revguard.Sessions = (*SessionCache)(nil)

// NewSessionCache returns a cache of at most DefaultMaxCachedSessions sessions in front
// of store. Call Close when done with it.
func NewSessionCache(store revguard.Sessions) *SessionCache {
	return NewSessionCacheSize(store, DefaultMaxCachedSessions)
}

// NewSessionCacheSize returns a cache of at most maxSessions sessions (at least 1) in
// front of store. Call Close when done with it.
func NewSessionCacheSize(store revguard.Sessions, maxSessions int) *SessionCache {
	c := &SessionCache{
		TTL:         DefaultSessionCacheTTL,
		NegativeTTL: DefaultNegativeTTL,
		Now:         time.Now,
		store:       store,
	}
	// Otter expires entries on its own clock, only to free memory; whether an entry
	// may be served is decided on c.Now, against the deadline stored in it.
	c.live = otter.Must(&otter.Options[[32]byte, cachedSession]{
		MaximumSize: max(maxSessions, 1),
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[[32]byte, cachedSession]) time.Duration {
			return max(e.Value.until.Sub(c.Now()), time.Nanosecond)
		}),
	})
	c.refused = otter.Must(&otter.Options[[32]byte, time.Time]{
		MaximumSize: maxNegative,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[[32]byte, time.Time]) time.Duration {
			return max(e.Value.Sub(c.Now()), time.Nanosecond)
		}),
	})
	return c
}

// Close stops the caches' background clean-up. It does not close the store.
func (c *SessionCache) Close() error {
	c.live.StopAllGoroutines()
	c.refused.StopAllGoroutines()
	return nil
}

// Len reports about how many sessions are cached (for the "cached sessions" metric).
func (c *SessionCache) Len() int { return c.live.EstimatedSize() }

// CreateSession issues a session in the store and caches it, since a new session is
// usually used right away.
func (c *SessionCache) CreateSession(ctx context.Context, customerID string, ttl time.Duration) (string, revguard.Session, error) {
	token, s, err := c.store.CreateSession(ctx, customerID, ttl)
	if err != nil {
		return "", revguard.Session{}, err
	}
	h := revguard.HashSessionToken(token)
	st := c.stripe(h)
	st.mu.Lock()
	gen := st.gen
	st.mu.Unlock()
	c.fill(h, gen, s, c.Now())
	return token, s, nil
}

// LiveSessions is how Warm reads the store: it calls fn with the token hash and
// session of up to limit live sessions, those to keep first, until fn returns false
// (sqlite.Sessions.EachLive).
type LiveSessions func(ctx context.Context, limit int, fn func(hash [32]byte, s revguard.Session) bool) error

// Warm caches the live sessions that each reads from the store, as many as the cache
// holds, and returns how many it cached. An embedded server calls it when it starts, so
// that a restart (after a crash in the middle of a drop, or a deploy before one) does
// not send every buyer's next request to the store, and again shortly before a SKU
// opens, so that the crowd's sessions, most issued long before, are in memory when it
// comes.
//
// Each session is cached as if read by FindSession when Warm began, so for TTL from
// then at most. One already cached until keep or later is left as it is; one cached
// until before keep is read again, when that makes it last longer. A token revoked
// through the cache while Warm runs is not cached, even when the store's read still
// saw it. Warm stops once a session it caches could no longer last (TTL after it
// began). Calls take turns.
func (c *SessionCache) Warm(ctx context.Context, each LiveSessions, keep time.Time) (int, error) {
	c.warmMu.Lock()
	defer c.warmMu.Unlock()
	// From here on DeleteSession notes what it revokes, before the store's read
	// begins: a revocation that the read may not see is noted.
	c.noteRevocations(true)
	defer c.noteRevocations(false)
	start := c.Now()
	n := 0
	err := each(ctx, int(c.live.GetMaximum()), func(h [32]byte, s revguard.Session) bool {
		until := c.until(s, start)
		if e, ok := c.live.GetIfPresent(h); !ok || (e.until.Before(keep) && until.After(e.until)) {
			if c.warmFill(h, s, until) {
				n++
			}
		}
		return ctx.Err() == nil && (c.TTL <= 0 || c.Now().Before(start.Add(c.TTL)))
	})
	if err == nil {
		err = ctx.Err()
	}
	return n, err
}

// noteRevocations gives every stripe an empty revoked set (on), or drops them.
func (c *SessionCache) noteRevocations(on bool) {
	for i := range c.stripes {
		st := &c.stripes[i]
		st.mu.Lock()
		st.revoked = nil
		if on {
			st.revoked = make(map[[32]byte]struct{})
		}
		st.mu.Unlock()
	}
}

// warmFill caches s until until unless its token was revoked while Warm runs or until
// has passed; it reports whether it did.
func (c *SessionCache) warmFill(h [32]byte, s revguard.Session, until time.Time) bool {
	if !c.Now().Before(until) {
		return false
	}
	st := c.stripe(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, revoked := st.revoked[h]; revoked {
		return false
	}
	c.live.Set(h, cachedSession{s: s, until: until})
	return true
}

// until is how long s, read from the store at now, may be served from memory: to its
// expiry, and for TTL at most.
func (c *SessionCache) until(s revguard.Session, now time.Time) time.Time {
	if limit := now.Add(c.TTL); c.TTL > 0 && limit.Before(s.ExpiresAt) {
		return limit
	}
	return s.ExpiresAt
}

// FindSession returns the live session of token from memory when it is there, and from
// the store otherwise. It fails with CodeUnauthenticated for an unknown, revoked or
// expired token.
func (c *SessionCache) FindSession(ctx context.Context, token string) (revguard.Session, error) {
	return c.FindSessionHashed(ctx, token, revguard.HashSessionToken(token))
}

// FindSessionHashed is FindSession for a caller that has hashed the token already: h
// must be revguard.HashSessionToken(token). The API's authentication hashes every
// bearer token once, for the admin check and the session both.
func (c *SessionCache) FindSessionHashed(ctx context.Context, token string, h [32]byte) (revguard.Session, error) {
	if token == "" {
		return revguard.Session{}, errUnknownSession()
	}
	now := c.Now()
	if e, ok := c.live.GetIfPresent(h); ok && now.Before(e.until) {
		return e.s, nil
	}
	if until, ok := c.refused.GetIfPresent(h); ok && now.Before(until) {
		return revguard.Session{}, errUnknownSession()
	}
	return c.miss(ctx, h, token)
}

// miss waits for the one store read of token that concurrent misses share. (A function
// of its own, so that FindSession's hit path allocates nothing for the closure.)
func (c *SessionCache) miss(ctx context.Context, h [32]byte, token string) (revguard.Session, error) {
	ch := c.loads.DoChan(string(h[:]), func() (any, error) { return c.load(ctx, h, token) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return revguard.Session{}, r.Err
		}
		return r.Val.(revguard.Session), nil
	case <-ctx.Done():
		return revguard.Session{}, fmt.Errorf("inproc: find session: %w", context.Cause(ctx))
	}
}

// load reads token from the store and caches the answer. It runs once for all the
// concurrent misses of one token, detached from the first caller's cancellation.
func (c *SessionCache) load(ctx context.Context, h [32]byte, token string) (revguard.Session, error) {
	st := c.stripe(h)
	st.mu.Lock()
	gen := st.gen // a revocation after this point keeps what we read out of the cache
	st.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionLoadTimeout)
	defer cancel()
	s, err := c.store.FindSession(ctx, token)
	now := c.Now()
	if err != nil {
		if revguard.ErrorCode(err) == revguard.CodeUnauthenticated && c.NegativeTTL > 0 {
			c.refused.Set(h, now.Add(c.NegativeTTL))
		}
		return revguard.Session{}, err
	}
	if !now.Before(s.ExpiresAt) {
		return revguard.Session{}, errUnknownSession() // fail closed on a clock disagreement
	}
	c.fill(h, gen, s, now)
	return s, nil
}

// fill caches s unless the token was revoked since gen was read.
func (c *SessionCache) fill(h [32]byte, gen uint64, s revguard.Session, now time.Time) {
	until := c.until(s, now)
	if !now.Before(until) {
		return
	}
	st := c.stripe(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gen != gen {
		return
	}
	c.live.Set(h, cachedSession{s: s, until: until})
}

// DeleteSession revokes token in the store and in memory. When it returns, the token
// is refused by FindSession, even if a store read that began before the revocation
// finishes after it.
func (c *SessionCache) DeleteSession(ctx context.Context, token string) error {
	h := revguard.HashSessionToken(token)
	err := c.store.DeleteSession(ctx, token)
	// After the store forgot the token: any read that still saw it began before this
	// point, read gen before this increment, and so will not cache it (fill), nor will
	// a Warm under way (revoked); an entry cached earlier goes now; and a FindSession
	// that starts from now on does not join such a read (Forget) but reads the store
	// afresh.
	st := c.stripe(h)
	st.mu.Lock()
	st.gen++
	if st.revoked != nil { // a Warm runs
		st.revoked[h] = struct{}{}
	}
	c.live.Invalidate(h)
	c.loads.Forget(string(h[:]))
	st.mu.Unlock()
	if err != nil {
		return err
	}
	if c.NegativeTTL > 0 {
		c.refused.Set(h, c.Now().Add(c.NegativeTTL))
	}
	return nil
}

func (c *SessionCache) stripe(h [32]byte) *stripe { return &c.stripes[h[0]%sessionStripes] }

func errUnknownSession() error {
	return revguard.Errorf(revguard.CodeUnauthenticated, "unknown or expired session")
}
