package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The revocation subscription's health check (see Sessions). A revocation made at time P
// can be missed by a cache served at S only if no ping sent after P had been answered
// by S, which the trust window excludes for S >= P + sessTrustWindow: logouts are seen
// everywhere within a second, with room for a slow answer.
const (
	sessPingInterval = 250 * time.Millisecond
	sessTrustWindow  = 750 * time.Millisecond
	// sessDeadAfter: a subscription without an answer for this long is dropped and
	// made again (a connection that died silently, with no reset).
	sessDeadAfter = 3 * time.Second

	sessMinBackoff = 100 * time.Millisecond
	sessMaxBackoff = 5 * time.Second
)

// errSessStale reports a subscription that stopped answering.
var errSessStale = errors.New("no answer on the subscription connection")

// mono is the monotonic time since s.base. It never reads s.Now, which judges session
// expiry and may be a test's frozen clock: the subscription's health is real time.
func (s *Sessions) mono() int64 { return int64(time.Since(s.base)) }

// trusted reports whether every revocation older than sessTrustWindow has been applied
// to the cache, so that the cache may be served.
func (s *Sessions) trusted() bool {
	c := s.confirmed.Load()
	return c > 0 && s.mono()-c < int64(sessTrustWindow)
}

// watch follows the revocation channel until ctx is cancelled. Open starts it in its
// own goroutine and Close stops it (cancelling ctx, which also closes the current
// subscription) and waits for done. The outcome of the first attempt (nil once
// subscribed) is sent on first, which has room for it.
//
// After each loss of the subscription the cache is distrusted at once, and watch
// subscribes again after a backoff (sessMinBackoff doubling to sessMaxBackoff, reset
// after a subscription that worked).
func (s *Sessions) watch(ctx context.Context, first chan<- error) {
	defer close(s.done)
	backoff := sessMinBackoff
	for {
		subscribed, err := s.follow(ctx, first)
		s.confirmed.Store(0)
		if first != nil && !subscribed {
			first <- err
		}
		first = nil
		if ctx.Err() != nil {
			return
		}
		if subscribed {
			backoff = sessMinBackoff
		}
		s.logger().Warn("redis: session revocations: subscription lost; sessions are read from Redis until it is back",
			"channel", s.channel(), "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, sessMaxBackoff)
	}
}

// follow runs one subscription until it fails or ctx is cancelled, applying each
// revocation to the cache. It reports whether the subscription was ever confirmed, and
// sends nil on first (when not nil) at the confirmation.
//
// Every subscription confirmation (the first, or one after go-redis reconnected on its
// own) clears the cache, since revocations published while unsubscribed were lost.
// Pings carry their send time; when one is answered, every message published before it
// was sent has been applied, and confirmed moves to that time.
func (s *Sessions) follow(ctx context.Context, first chan<- error) (subscribed bool, err error) {
	channel := s.channel()
	ps := s.client.Subscribe(ctx, channel)
	defer ps.Close()
	// Close cancels ctx: closing the subscription ends a read that is waiting.
	defer context.AfterFunc(ctx, func() { ps.Close() })()

	start := s.mono()
	lastPing := int64(-1 << 62)
	for {
		now := s.mono()
		if now-lastPing >= int64(sessPingInterval) {
			if err := ps.Ping(ctx, strconv.FormatInt(now, 10)); err != nil {
				return subscribed, fmt.Errorf("ping: %w", err)
			}
			lastPing = now
		}
		if since := max(start, s.confirmed.Load()); now-since > int64(sessDeadAfter) {
			return subscribed, errSessStale
		}
		msg, err := ps.ReceiveTimeout(ctx, sessPingInterval)
		if err != nil {
			if ctx.Err() != nil {
				return subscribed, ctx.Err()
			}
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				continue
			}
			return subscribed, err
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind != "subscribe" || m.Channel != channel {
				continue
			}
			s.clearAll()
			s.confirmed.Store(max(s.mono(), 1))
			if !subscribed && first != nil {
				first <- nil
			}
			subscribed = true
		case *goredis.Message:
			if m.Channel != channel {
				continue
			}
			h, ok := sessParseHash(m.Payload)
			if !ok {
				// Not ours to understand: assume the worst, that some session was revoked.
				// Cleared before the log line says so (a test waits for the line).
				s.clearAll()
				s.logger().Warn("redis: session revocations: malformed message; cache cleared", "channel", s.channel())
				continue
			}
			s.evict(h)
		case *goredis.Pong:
			// The payload is the send time of one of our pings; anything else is ignored.
			sent, err := strconv.ParseInt(m.Payload, 10, 64)
			if err == nil && subscribed && sent > s.confirmed.Load() && sent <= s.mono() {
				s.confirmed.Store(max(sent, 1))
			}
		}
	}
}
