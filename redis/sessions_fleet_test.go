package redis_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
)

// sessRevocationBound is the documented bound of the cache's trust window: a node that
// missed a revocation serves no cached session for longer than this. It is a behaviour,
// so it is asserted.
const sessRevocationBound = time.Second

// sessNode is one node of a test fleet: its own client (connection pool and
// subscription, named in CLIENT LIST), its Sessions, and a count of its GETs.
type sessNode struct {
	name   string
	client *goredis.Client
	s      *redis.Sessions
	gets   *atomic.Int64
	logs   *sessLog
}

// sessMustFleet opens n nodes on the shared server, in one fresh namespace.
func sessMustFleet(tb testing.TB, n int) (nodes []*sessNode, ns string, admin *goredis.Client) {
	tb.Helper()
	admin = sessMustClient(tb, "")
	ns = sessNamespace(tb, admin)
	for i := range n {
		name := fmt.Sprintf("%s-node%d", ns, i+1)
		c := sessMustClient(tb, name)
		gets := sessCountGets(c)
		s, logs := sessMustOpenWith(tb, c, ns, nil)
		nodes = append(nodes, &sessNode{name: name, client: c, s: s, gets: gets, logs: logs})
	}
	return nodes, ns, admin
}

// findCached checks that node serves tok from its cache (no GET sent). The cache is
// served only while the revocation channel answers its pings (every 250 ms, within a
// 750 ms trust window): it first waits, up to 10 s, for a fresh answer, so that a
// busy machine's late pong does not make a GET.
func (n *sessNode) findCached(tb testing.TB, tok, customer string) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); n.s.TrustLeft() < 500*time.Millisecond; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: the session cache not trusted for 10 s", n.name)
		}
	}
	before := n.gets.Load()
	sessMustFind(tb, n.s, tok, customer)
	if got := n.gets.Load() - before; got != 0 {
		tb.Fatalf("%s: FindSession of a cached session sent %d GETs, want 0 (served from the cache)", n.name, got)
	}
}

// sessUntilRefused calls FindSession on s until it refuses tok as unauthenticated, and
// returns how long that took from start. Any other error fails the test; so does a
// session still served after limit.
func sessUntilRefused(tb testing.TB, s revguard.Sessions, tok string, start time.Time, limit time.Duration) time.Duration {
	tb.Helper()
	for {
		_, err := s.FindSession(context.Background(), tok)
		switch code := revguard.ErrorCode(err); code {
		case revguard.CodeUnauthenticated:
			return time.Since(start)
		case "":
		default:
			tb.Fatalf("FindSession of a revoked session: %v (code %q), want unauthenticated", err, code)
		}
		if d := time.Since(start); d > limit {
			tb.Fatalf("revoked session still served %v after the logout (bound %v)", d, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sessPubSubID returns the id of the pub/sub connection of the client named name, or 0.
func sessPubSubID(tb testing.TB, admin *goredis.Client, name string) int64 {
	tb.Helper()
	list, err := admin.ClientList(context.Background()).Result()
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") || strings.Contains(line, " sub=0 ") {
			continue
		}
		var id int64
		if _, err := fmt.Sscanf(line, "id=%d ", &id); err == nil {
			return id
		}
	}
	return 0
}

// TestSessionsFleet: three nodes share sessions; a logout on one is refused on the
// others within a second although both had the session cached.
func TestSessionsFleet(t *testing.T) {
	nodes, ns, admin := sessMustFleet(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := t.Context()

	tok := sessMustCreate(t, n1.s, "c-fleet")
	sessMustFind(t, n2.s, tok, "c-fleet") // miss: read from Redis, then cached
	sessMustFind(t, n3.s, tok, "c-fleet")
	n2.findCached(t, tok, "c-fleet")
	n3.findCached(t, tok, "c-fleet")
	n1.findCached(t, tok, "c-fleet") // cached at creation

	// The caches are what answers: a key deleted behind Sessions' back (no
	// announcement) is still served by the nodes that cached it.
	other := sessMustCreate(t, n1.s, "c-other")
	sessMustFind(t, n2.s, other, "c-other")
	h := revguard.HashSessionToken(other)
	if err := admin.Del(ctx, ns+":sess:"+sessHashKey(h)).Err(); err != nil {
		t.Fatal(err)
	}
	n2.findCached(t, other, "c-other")

	// Once DeleteSession has returned, every node refuses the token (docs/api.md: from then
	// on, on every node), without waiting.
	start := time.Now()
	if err := n1.s.DeleteSession(ctx, tok); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	for _, n := range nodes {
		_, err := n.s.FindSession(ctx, tok)
		sessWantCode(t, "FindSession on "+n.name+" right after the logout", err, revguard.CodeUnauthenticated)
	}
	t.Logf("the logout took %v with three nodes (trust window %v)", took, sessRevocationBound)

	// A token revoked elsewhere stays refused (and a new one works everywhere).
	tok2 := sessMustCreate(t, n3.s, "c-fleet")
	sessMustFind(t, n1.s, tok2, "c-fleet")
	sessMustFind(t, n2.s, tok2, "c-fleet")
	if err := n2.s.DeleteSession(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		_, err := n.s.FindSession(ctx, tok2)
		sessWantCode(t, "FindSession on "+n.name+" right after the logout", err, revguard.CodeUnauthenticated)
	}
}

// TestSessionsFleetLogoutRace: a node that served a session from its cache a moment
// before refuses it as soon as a logout on another node has returned, many times over
// (a contract probe saw a reserve on the other node succeed a few milliseconds after
// the logout's 204, 6 times in 400, when the logout did not wait).
func TestSessionsFleetLogoutRace(t *testing.T) {
	nodes, _, _ := sessMustFleet(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := t.Context()
	for i := range 5 {
		tok := sessMustCreate(t, a.s, fmt.Sprintf("c-race-%d", i))
		sessMustFind(t, b.s, tok, fmt.Sprintf("c-race-%d", i))
		b.findCached(t, tok, fmt.Sprintf("c-race-%d", i))
		if err := a.s.DeleteSession(ctx, tok); err != nil {
			t.Fatal(err)
		}
		_, err := b.s.FindSession(ctx, tok)
		sessWantCode(t, "FindSession on the other node right after the logout", err, revguard.CodeUnauthenticated)
	}
}

// TestSessionsFleetResubscribe kills a node's subscription connection: revocations
// made while it is down are lost to it, yet it refuses the revoked sessions, because
// its cache is not trusted while unsubscribed and is cleared when it subscribes again.
func TestSessionsFleetResubscribe(t *testing.T) {
	nodes, ns, admin := sessMustFleet(t, 2)
	n1, n2 := nodes[0], nodes[1]
	ctx := t.Context()

	logout := sessMustCreate(t, n1.s, "c-logout")
	behind := sessMustCreate(t, n1.s, "c-behind")
	kept := sessMustCreate(t, n1.s, "c-kept")
	for _, tok := range []string{logout, behind, kept} {
		sessMustFind(t, n2.s, tok, sessCustomerOf(t, n1.s, tok))
	}
	n2.findCached(t, behind, "c-behind")

	id := sessPubSubID(t, admin, n2.name)
	if id == 0 {
		t.Fatalf("no pub/sub connection named %s in CLIENT LIST", n2.name)
	}
	if err := admin.ClientKillByFilter(ctx, "ID", fmt.Sprint(id)).Err(); err != nil {
		t.Fatal(err)
	}
	// A logout through node 1 right away: its announcement is likely lost to node 2.
	if err := n1.s.DeleteSession(ctx, logout); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// A key deleted with no announcement at all: only clearing the cache on
	// resubscription can make node 2 see it.
	h := revguard.HashSessionToken(behind)
	if err := admin.Del(ctx, ns+":sess:"+sessHashKey(h)).Err(); err != nil {
		t.Fatal(err)
	}
	d := sessUntilRefused(t, n2.s, logout, start, sessRevocationBound)
	t.Logf("logout during the subscription's loss seen by node 2 after %v", d)

	// Node 2 subscribes again on a new connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if nid := sessPubSubID(t, admin, n2.name); nid != 0 && nid != id {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node 2 did not subscribe again within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := n2.s.FindSession(ctx, behind)
	sessWantCode(t, "FindSession of a session deleted while unsubscribed", err, revguard.CodeUnauthenticated)
	sessMustFind(t, n2.s, kept, "c-kept")

	// The new subscription works: the cache is trusted again, and revocations arrive.
	sessUntilCached(t, n2, kept, "c-kept")
	if err := n1.s.DeleteSession(ctx, kept); err != nil {
		t.Fatal(err)
	}
	sessUntilRefused(t, n2.s, kept, time.Now(), sessRevocationBound)
	if !strings.Contains(n2.logs.String(), "subscription lost") {
		t.Errorf("node 2 did not log the loss of its subscription; log:\n%s", n2.logs)
	}
}

// sessUntilCached waits until node serves tok from its cache: once its new
// subscription is confirmed and a read has filled the cache.
func sessUntilCached(tb testing.TB, n *sessNode, tok, customer string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sessMustFind(tb, n.s, tok, customer)
		before := n.gets.Load()
		sessMustFind(tb, n.s, tok, customer)
		if n.gets.Load() == before {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: the cache is still not used 10s after resubscribing", n.name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sessCustomerOf(tb testing.TB, s revguard.Sessions, tok string) string {
	tb.Helper()
	got, err := s.FindSession(context.Background(), tok)
	if err != nil {
		tb.Fatal(err)
	}
	return got.CustomerID
}

// sessAfterGet runs f (once) right after the first GET that c sends from now on has
// its answer, before the caller sees it.
type sessAfterGet struct {
	once *sync.Once
	f    func()
}

func (sessAfterGet) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h sessAfterGet) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "get" {
			h.once.Do(h.f)
		}
		return err
	}
}

func (sessAfterGet) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

// TestSessionsFleetRevokedDuringRead: node 2 reads a session from Redis, and node 1
// revokes it before node 2 has cached what it read. The read may answer with the
// session (it began before the logout), but node 2 must not cache it: its next
// FindSession is refused at once.
func TestSessionsFleetRevokedDuringRead(t *testing.T) {
	nodes, _, _ := sessMustFleet(t, 2)
	n1, n2 := nodes[0], nodes[1]
	tok := sessMustCreate(t, n1.s, "c-race")
	n2.client.AddHook(sessAfterGet{once: new(sync.Once), f: func() {
		if err := n1.s.DeleteSession(context.Background(), tok); err != nil {
			t.Error(err)
		}
		// Give node 2's subscription time to apply the revocation before the read
		// goes on to fill the cache. Were it slower, the eviction would come after
		// the fill and remove the entry: the test cannot fail spuriously.
		time.Sleep(100 * time.Millisecond)
	}})
	sessMustFind(t, n2.s, tok, "c-race") // read before the logout: still valid
	_, err := n2.s.FindSession(context.Background(), tok)
	sessWantCode(t, "FindSession right after the racing logout", err, revguard.CodeUnauthenticated)
}

// TestSessionsFleetMalformedRevocation: a message on the channel that is not a hash
// cannot say what was revoked, so the node assumes the worst and clears its cache.
func TestSessionsFleetMalformedRevocation(t *testing.T) {
	nodes, ns, admin := sessMustFleet(t, 1)
	n := nodes[0]
	tok := sessMustCreate(t, n.s, "c-1")
	n.findCached(t, tok, "c-1")
	if err := admin.Publish(t.Context(), ns+":revoked", "not a hash").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(sessRevocationBound)
	for !strings.Contains(n.logs.String(), "malformed message") {
		if time.Now().After(deadline) {
			t.Fatalf("malformed revocation not noticed within %v", sessRevocationBound)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := n.gets.Load()
	sessMustFind(t, n.s, tok, "c-1")
	if n.gets.Load() == before {
		t.Fatal("the session was still served from the cache after a malformed revocation")
	}
}
