package revguard_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestSeqNotifier: a wait ends once the seq passes its value, never before; a lower
// publish is ignored; a wait ends with its context.
func TestSeqNotifier(t *testing.T) {
	var n revguard.SeqNotifier
	if err := waitBriefly(&n, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a seq above 0 at 0: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Wait(t.Context(), 4) }()
	n.Publish(3)
	select {
	case err := <-done:
		t.Fatalf("wait for a seq above 4 ended at 3: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	n.Publish(5)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n.Publish(2)
	if got := n.Load(); got != 5 {
		t.Fatalf("seq %d after publishing 2 at 5, want 5", got)
	}
	if err := n.Wait(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
}

// waitBriefly waits 10ms for a seq above after.
func waitBriefly(n *revguard.SeqNotifier, after uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	return n.Wait(ctx, after)
}
