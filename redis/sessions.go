package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/revenueguard/revguard"
)

// Defaults of Sessions.
const (
	// DefaultMaxCachedSessions bounds the sessions a node keeps in memory (a few hundred
	// bytes each).
	DefaultMaxCachedSessions = 100_000

	// DefaultSessionMaxAge caps how long a session stays cached. Revocations reach every
	// node through the revocation channel; this bounds how long one made behind
	// Sessions' back (an operator deleting keys) goes unseen.
	DefaultSessionMaxAge = time.Minute

	// DefaultSessionNegativeTTL is how long a refused token is refused from memory.
	DefaultSessionNegativeTTL = 5 * time.Second

	// DefaultSessionTimeout bounds each Redis call of Sessions.
	DefaultSessionTimeout = 2 * time.Second
)

const (
	// sessGrace keeps a session's key this long past its expiry: Redis deletes it then
	// (garbage collection only: validity is judged against Now), and a node whose clock
	// is a little behind still finds it and refuses it as expired, not unknown.
	sessGrace = time.Minute

	// sessMaxTokenLen: longer tokens are refused without a Redis call (ours are 43).
	sessMaxTokenLen = 512

	sessMaxNegative = 10_000
	sessWhat        = "session store" // in the detail of CodeUnavailable errors
	sessStripes     = 64
)

// Sessions is a revguard.Sessions on Redis, shared by every node of a fleet, with a
// node-local cache in front.
//
// A session lives at <Namespace>:sess:<base64url SHA-256 of the token>: only the hash of
// a token is stored (revguard.HashSessionToken). The value holds the customer id and the
// creation and expiry times (sessEncode). The key expires a minute after the session, so
// Redis collects expired sessions itself and nothing like sqlite's PurgeExpired is
// needed; whether a session is still valid is decided on Now, so an injected clock works.
//
// Revocation reaches every node within a second. DeleteSession deletes the key and
// publishes the token's hash on <Namespace>:revoked in one atomic script; every node
// subscribes (the goroutine that Open starts) and evicts the hash from its cache. A node
// serves from its cache only while its subscription is proven live: it pings on the
// subscription connection every sessPingInterval, and the cache is trusted only while a
// ping sent less than sessTrustWindow ago has been answered. Redis answers a ping after
// every message published before it, so every revocation older than sessTrustWindow has
// been applied whenever the cache is used. While the subscription is down the cache is
// bypassed (every FindSession reads Redis), and it is cleared when the subscription is
// back, since revocations published in between were lost. Each entry is also cached for
// at most MaxAge.
//
// The rest follows inproc.SessionCache: expiry is exact; a read that raced with a
// revocation never fills the cache (stripe generations); concurrent misses of a token
// share one Redis read (singleflight); refused tokens are remembered for NegativeTTL
// (a token never becomes valid later: it is 256 random bits, stored before it is handed
// out). The client must therefore read from primaries, not replicas (ClusterOptions
// ReadOnly off), which also keeps the subscription on the channel's master.
//
// When Redis cannot be reached every method fails with revguard.CodeUnavailable (503),
// never CodeUnauthenticated for a token that may be valid. Each Redis call is bounded by
// Timeout; the client must have ContextTimeoutEnabled for the bound to reach the socket
// (otherwise its ReadTimeout bounds it).
type Sessions struct {
	// Namespace prefixes every key and the channel; NewSessions sets "rg".
	Namespace string

	// Now is the clock that judges expiry; NewSessions sets time.Now.
	Now func() time.Time

	// Logger receives subscription losses; NewSessions sets slog.Default().
	Logger *slog.Logger

	// MaxCached bounds the cached sessions; NewSessions sets DefaultMaxCachedSessions.
	// Zero disables the cache: every FindSession reads Redis.
	MaxCached int

	// MaxAge caps how long a session stays cached; NewSessions sets
	// DefaultSessionMaxAge.
	MaxAge time.Duration

	// NegativeTTL is how long a refused token is refused from memory; NewSessions sets
	// DefaultSessionNegativeTTL. Zero disables negative caching.
	NegativeTTL time.Duration

	// Timeout bounds each Redis call; NewSessions sets DefaultSessionTimeout.
	Timeout time.Duration

	client goredis.UniversalClient
	base   time.Time // monotonic origin of confirmed and of ping payloads

	// confirmed is the monotonic time (since base) up to which every revocation
	// published on the channel has been applied to the cache, or 0 while the
	// subscription is down. Written only by the watch goroutine.
	confirmed atomic.Int64

	// Set by Open.
	live      *otter.Cache[[32]byte, sessCached] // nil when caching is off
	refused   *otter.Cache[[32]byte, time.Time]  // value: refused until
	loads     singleflight.Group
	stop      context.CancelFunc
	done      chan struct{} // closed when the watch goroutine returns
	closeOnce sync.Once

	// stripes order cache fills against revocations (fill, evict, clearAll). A stripe's
	// mutex is a leaf lock: nothing else is locked while it is held, except otter's
	// internal locks inside Set and Invalidate; clearAll takes them one at a time.
	stripes [sessStripes]sessStripe
}

type sessStripe struct {
	mu  sync.Mutex
	gen uint64 // incremented by every revocation of a token of this stripe
	_   [48]byte
}

type sessCached struct {
	s     revguard.Session
	until time.Time // min(s.ExpiresAt, cached at + MaxAge), on Now
}

var _ revguard.Sessions = (*Sessions)(nil)

// NewSessions returns Sessions on client (a single server or a Cluster) with the
// default settings. Change the settings, then call Open before use and Close after.
func NewSessions(client goredis.UniversalClient) *Sessions {
	return &Sessions{
		Namespace:   "rg",
		Now:         time.Now,
		Logger:      slog.Default(),
		MaxCached:   DefaultMaxCachedSessions,
		MaxAge:      DefaultSessionMaxAge,
		NegativeTTL: DefaultSessionNegativeTTL,
		Timeout:     DefaultSessionTimeout,
		client:      client,
		base:        time.Now(),
	}
}

// Open builds the cache and starts the goroutine that follows revocations, then waits
// (at most Timeout) for its first subscription, so that a node starts with a usable
// cache and a Redis that refuses SUBSCRIBE is noticed at start. The goroutine runs until
// Close.
func (s *Sessions) Open(ctx context.Context) error {
	if s.done != nil {
		return errors.New("redis: sessions already open")
	}
	if s.MaxCached > 0 {
		// Otter expires entries on its own clock, only to free memory; whether an entry
		// may be served is decided on s.Now, against the deadline stored in it.
		s.live = otter.Must(&otter.Options[[32]byte, sessCached]{
			MaximumSize: s.MaxCached,
			ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[[32]byte, sessCached]) time.Duration {
				return max(e.Value.until.Sub(s.Now()), time.Nanosecond)
			}),
		})
	}
	s.refused = otter.Must(&otter.Options[[32]byte, time.Time]{
		MaximumSize: sessMaxNegative,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[[32]byte, time.Time]) time.Duration {
			return max(e.Value.Sub(s.Now()), time.Nanosecond)
		}),
	})
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	s.done = make(chan struct{})
	first := make(chan error, 1)
	go s.watch(wctx, first)

	t := time.NewTimer(s.timeout())
	defer t.Stop()
	var err error
	select {
	case err = <-first:
		if err == nil {
			return nil
		}
	case <-t.C:
		err = errors.New("no confirmation in time")
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	s.Close()
	return fmt.Errorf("redis: open sessions: subscribe to %s: %w: %w", s.channel(),
		revguard.Errorf(revguard.CodeUnavailable, "%s unavailable", sessWhat), err)
}

// Close stops the revocation goroutine and waits for it; the cache is not used after.
// It does not close the client.
func (s *Sessions) Close() error {
	if s.done == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done
		s.confirmed.Store(0)
		if s.live != nil {
			s.live.StopAllGoroutines()
		}
		s.refused.StopAllGoroutines()
	})
	return nil
}

// Len reports about how many sessions are cached (for a metric).
func (s *Sessions) Len() int {
	if s.live == nil {
		return 0
	}
	return s.live.EstimatedSize()
}

// CreateSession issues a new token for customerID, valid for ttl (0 means
// revguard.DefaultSessionTTL), stores its hash and caches the session. It fails with
// CodeInvalidRequest for an invalid customer id or ttl, and CodeUnavailable when Redis
// cannot be reached (the session may then exist, unused, until its key expires).
func (s *Sessions) CreateSession(ctx context.Context, customerID string, ttl time.Duration) (string, revguard.Session, error) {
	if ttl == 0 {
		ttl = revguard.DefaultSessionTTL
	}
	switch {
	case !revguard.ValidCustomerID(customerID):
		return "", revguard.Session{}, revguard.Errorf(revguard.CodeInvalidRequest, "customer_id must be 1 to %d printable characters", revguard.MaxCustomerIDLen)
	case ttl < revguard.MinSessionTTL || ttl > revguard.MaxSessionTTL:
		return "", revguard.Session{}, revguard.Errorf(revguard.CodeInvalidRequest, "ttl must be between %s and %s", revguard.MinSessionTTL, revguard.MaxSessionTTL)
	}
	now := s.Now().UTC()
	sess := revguard.Session{CustomerID: customerID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	token := revguard.NewSessionToken()
	h := revguard.HashSessionToken(token)

	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	// NX: a 256-bit collision is impossible in practice, but never overwrite a session.
	ok, err := s.client.SetNX(ctx, s.key(h), sessEncode(sess), ttl+sessGrace).Result()
	if err != nil {
		return "", revguard.Session{}, sessStoreError("create session", sessWhat, err)
	}
	if !ok {
		return "", revguard.Session{}, errors.New("redis: create session: token hash already stored")
	}
	s.fill(h, s.gen(h), sess, now)
	return token, sess, nil
}

// FindSession returns the live session of token: from memory when it is cached and the
// cache is trusted, from Redis otherwise. It fails with CodeUnauthenticated for an
// unknown, revoked or expired token, and CodeUnavailable when Redis cannot be reached.
func (s *Sessions) FindSession(ctx context.Context, token string) (revguard.Session, error) {
	return s.FindSessionHashed(ctx, token, revguard.HashSessionToken(token))
}

// FindSessionHashed is FindSession for a caller that has hashed the token already: h
// must be revguard.HashSessionToken(token). The API's authentication hashes every
// bearer token once, for the admin check and the session both.
func (s *Sessions) FindSessionHashed(ctx context.Context, token string, h [32]byte) (revguard.Session, error) {
	if token == "" || len(token) > sessMaxTokenLen {
		return revguard.Session{}, sessErrUnknown()
	}
	now := s.Now()
	if s.live != nil && s.trusted() {
		if e, ok := s.live.GetIfPresent(h); ok && now.Before(e.until) {
			return e.s, nil
		}
	}
	if s.refused != nil {
		if until, ok := s.refused.GetIfPresent(h); ok && now.Before(until) {
			return revguard.Session{}, sessErrUnknown()
		}
	}
	return s.miss(ctx, h)
}

// miss waits for the one Redis read of h that concurrent misses share. The singleflight
// key carries the stripe's generation, so a caller that comes after a revocation (or a
// resubscription) never joins a read that began before it.
func (s *Sessions) miss(ctx context.Context, h [32]byte) (revguard.Session, error) {
	gen := s.gen(h)
	var k [40]byte
	copy(k[:], h[:])
	binary.LittleEndian.PutUint64(k[32:], gen)
	ch := s.loads.DoChan(string(k[:]), func() (any, error) { return s.load(ctx, h, gen) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return revguard.Session{}, r.Err
		}
		return r.Val.(revguard.Session), nil
	case <-ctx.Done():
		return revguard.Session{}, fmt.Errorf("redis: find session: %w: %w",
			revguard.Errorf(revguard.CodeUnavailable, "session lookup abandoned"), context.Cause(ctx))
	}
}

// load reads h from Redis and caches the answer unless the token was revoked since gen.
// It runs once for all the concurrent misses of one token, detached from the first
// caller's cancellation and bounded by Timeout.
func (s *Sessions) load(ctx context.Context, h [32]byte, gen uint64) (revguard.Session, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout())
	defer cancel()
	v, err := s.client.Get(ctx, s.key(h)).Result()
	now := s.Now()
	switch {
	case errors.Is(err, goredis.Nil):
		s.refuse(h, now)
		return revguard.Session{}, sessErrUnknown()
	case err != nil:
		return revguard.Session{}, sessStoreError("find session", sessWhat, err)
	}
	sess, err := sessDecode(v)
	if err != nil {
		return revguard.Session{}, fmt.Errorf("redis: find session %s: %w", s.key(h), err)
	}
	if !now.Before(sess.ExpiresAt) {
		s.refuse(h, now)
		return revguard.Session{}, sessErrUnknown()
	}
	s.fill(h, gen, sess, now)
	return sess, nil
}

// DeleteSession revokes token on every node: it deletes the key and publishes the hash
// in one script (and, on a Cluster, publishes it again where the subscriptions are),
// evicts it here, and returns once no node can serve it any more (docs/api.md: refused from
// then on, on every node). Another node applies the revocation when the message
// reaches its subscription, a few milliseconds later, and serves its cache only while
// a ping sent after the message has been answered within sessTrustWindow; so when
// another node heard the message, DeleteSession waits that window out before it
// returns. Revoking an unknown token is not an error. It fails with CodeUnavailable
// when Redis cannot be reached; the caller should retry, as other nodes may serve the
// session from their cache until they distrust it.
func (s *Sessions) DeleteSession(ctx context.Context, token string) error {
	h := revguard.HashSessionToken(token)
	rctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	msg := sessHashString(h)
	heard, err := sessRevokeScript.Run(rctx, s.client, []string{s.key(h)}, s.channel(), msg).Int64()
	if cc, ok := s.client.(*goredis.ClusterClient); ok && err == nil {
		heard, err = sessAnnounceInCluster(rctx, cc, s.channel(), msg)
	}
	// Evict even after a failure: the script may have run.
	s.evict(h)
	if err != nil {
		return sessStoreError("delete session", sessWhat, err)
	}
	s.refuse(h, s.Now())
	// heard counts this node's own subscription too, while it is live.
	if heard > 1 || heard == 1 && !s.trusted() {
		t := time.NewTimer(sessTrustWindow)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("redis: delete session: %w: %w",
				revguard.Errorf(revguard.CodeUnavailable, "the revocation may not have reached every node yet"), context.Cause(ctx))
		}
	}
	return nil
}

// sessRevokeScript deletes a session and announces it atomically: no node can read the
// key as deleted without the message being on its way. PUBLISH has no key, so this
// works in a Cluster too (the message is broadcast to every node of the cluster; see
// sessAnnounceInCluster for the copy that keeps it in order with the pings). It
// returns the number of subscriptions that received the message on this server.
var sessRevokeScript = goredis.NewScript(`
redis.call('DEL', KEYS[1])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
`)

// sessAnnounceInCluster publishes msg again on the master that owns channel's slot,
// where every node's subscription is connected (go-redis subscribes there). The
// script's PUBLISH, on the session's master, reaches it over the cluster bus, and a
// ping may overtake it there; this second copy is in order with the pings, which keeps
// the trust window's proof. A node evicts twice, harmlessly. It returns the number of
// subscriptions there that received it.
func sessAnnounceInCluster(ctx context.Context, cc *goredis.ClusterClient, channel, msg string) (int64, error) {
	m, err := cc.MasterForKey(ctx, channel)
	if err != nil {
		return 0, err
	}
	return m.Publish(ctx, channel, msg).Result()
}

// fill caches sess unless h was revoked (or the cache cleared) since gen was read.
func (s *Sessions) fill(h [32]byte, gen uint64, sess revguard.Session, now time.Time) {
	if s.live == nil {
		return
	}
	until := sess.ExpiresAt
	if limit := now.Add(s.MaxAge); s.MaxAge > 0 && limit.Before(until) {
		until = limit
	}
	if !now.Before(until) {
		return
	}
	st := s.stripe(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gen != gen {
		return
	}
	s.live.Set(h, sessCached{s: sess, until: until})
}

// evict forgets h: a read of it that is in flight will not cache what it read, and a
// later FindSession reads Redis afresh.
func (s *Sessions) evict(h [32]byte) {
	st := s.stripe(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gen++
	if s.live != nil {
		s.live.Invalidate(h)
	}
}

// clearAll forgets every cached session, as if each had been revoked. A fill that
// passed its generation check before its stripe is bumped here has already stored its
// entry, which InvalidateAll then removes.
func (s *Sessions) clearAll() {
	for i := range s.stripes {
		st := &s.stripes[i]
		st.mu.Lock()
		st.gen++
		st.mu.Unlock()
	}
	if s.live != nil {
		s.live.InvalidateAll()
	}
}

// refuse remembers for NegativeTTL that h is not a valid token.
func (s *Sessions) refuse(h [32]byte, now time.Time) {
	if s.refused != nil && s.NegativeTTL > 0 {
		s.refused.Set(h, now.Add(s.NegativeTTL))
	}
}

func (s *Sessions) gen(h [32]byte) uint64 {
	st := s.stripe(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.gen
}

func (s *Sessions) stripe(h [32]byte) *sessStripe { return &s.stripes[h[0]%sessStripes] }

// key is the Redis key of the session whose token hashes to h.
func (s *Sessions) key(h [32]byte) string { return s.Namespace + ":sess:" + sessHashString(h) }

// channel is where revoked hashes are published.
func (s *Sessions) channel() string { return s.Namespace + ":revoked" }

func (s *Sessions) timeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultSessionTimeout
	}
	return s.Timeout
}

func (s *Sessions) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

func sessErrUnknown() error {
	return revguard.Errorf(revguard.CodeUnauthenticated, "unknown or expired session")
}
