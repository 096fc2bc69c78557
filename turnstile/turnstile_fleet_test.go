package turnstile_test

import (
	"sync"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/turnstile"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// A fleet of nodes checks Turnstile tokens independently. BotChecker keeps no state
// about tokens (no cache of verified ones): only siteverify decides, and a token is
// single-use there, so a token spent through one node is refused through any other.
// These tests run two checkers, two "nodes", against one fake siteverify.

// TestVerifyFleetReplay: a token spent on node 1 is refused on node 2, and the other
// way round.
func TestVerifyFleetReplay(t *testing.T) {
	fake, _ := MustStartFake(t)
	node1, _, _ := MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
	node2, _, _ := MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
	ctx := t.Context()
	for _, tt := range []struct {
		name          string
		spend, replay *turnstile.BotChecker
	}{
		{"Node1ThenNode2", node1, node2},
		{"Node2ThenNode1", node2, node1},
		{"SameNode", node1, node1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := fake.Token()
			if err := tt.spend.Verify(ctx, tok, "203.0.113.7"); err != nil {
				t.Fatalf("first use: %v", err)
			}
			err := tt.replay.Verify(ctx, tok, "203.0.113.7")
			if code := revguard.ErrorCode(err); code != revguard.CodeBotCheckFailed {
				t.Fatalf("replay: %v (code %q), want %q", err, code, revguard.CodeBotCheckFailed)
			}
		})
	}
}

// TestVerifyFleetRace: one token sent to both nodes at once passes on exactly one.
func TestVerifyFleetRace(t *testing.T) {
	fake, _ := MustStartFake(t)
	nodes := make([]*turnstile.BotChecker, 2)
	for i := range nodes {
		nodes[i], _, _ = MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
	}
	for round := range 20 {
		tok := fake.Token()
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = nodes[i%2].Verify(t.Context(), tok, "") })
		}
		wg.Wait()
		passed := 0
		for _, err := range errs {
			switch code := revguard.ErrorCode(err); code {
			case "":
				passed++
			case revguard.CodeBotCheckFailed:
			default:
				t.Fatalf("round %d: %v (code %q)", round, err, code)
			}
		}
		if passed != 1 {
			t.Fatalf("round %d: one token passed %d times across two nodes, want once", round, passed)
		}
	}
}

// TestVerifyFleetLostAnswer: node 1's first siteverify answer is lost after the token was
// spent; its retry (same idempotency key) passes. The idempotency key is node 1's own,
// for that one check: the token replayed on node 2 is refused.
func TestVerifyFleetLostAnswer(t *testing.T) {
	fake, _ := MustStartFake(t)
	node1, _, _ := MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
	node2, _, _ := MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
	tok := fake.Token()
	fake.FailNext(1, turnstiletest.ModeDropAnswer)
	if err := node1.Verify(t.Context(), tok, ""); err != nil {
		t.Fatalf("node 1 with a lost answer: %v", err)
	}
	err := node2.Verify(t.Context(), tok, "")
	if code := revguard.ErrorCode(err); code != revguard.CodeBotCheckFailed {
		t.Fatalf("replay on node 2: %v (code %q), want %q", err, code, revguard.CodeBotCheckFailed)
	}
	reqs := fake.Requests()
	if len(reqs) != 3 || reqs[0].IdempotencyKey != reqs[1].IdempotencyKey || reqs[2].IdempotencyKey == reqs[0].IdempotencyKey {
		t.Fatalf("requests %+v: want node 1's two attempts with one key, then node 2's with another", reqs)
	}
}
