package revguard

import (
	"context"
	"sync"
	"sync/atomic"
)

// SeqNotifier holds a sequence number that only grows, and wakes whoever waits for it
// to pass a value: the newest change of a change log, for the event streams and the
// webhooks that wait for the next one. The zero value is ready, at 0.
type SeqNotifier struct {
	seq     atomic.Uint64
	mu      sync.Mutex
	changed chan struct{} // closed and replaced each time seq moves
}

// Load returns the newest seq published.
func (n *SeqNotifier) Load() uint64 { return n.seq.Load() }

// Publish raises the seq to seq (a lower one is ignored) and wakes the waiters.
func (n *SeqNotifier) Publish(seq uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if seq <= n.seq.Load() {
		return
	}
	n.seq.Store(seq)
	if n.changed != nil {
		close(n.changed)
		n.changed = nil
	}
}

// Wait blocks until the seq is above after, or ctx is done (then it returns ctx.Err()).
func (n *SeqNotifier) Wait(ctx context.Context, after uint64) error {
	for {
		n.mu.Lock()
		if n.seq.Load() > after {
			n.mu.Unlock()
			return nil
		}
		if n.changed == nil {
			n.changed = make(chan struct{})
		}
		ch := n.changed
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
