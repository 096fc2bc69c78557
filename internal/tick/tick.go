// Package tick runs a function on a ticker until a context ends: the loop of the
// project's background goroutines (sweeps, copies, refreshes, warm-ups).
package tick

import (
	"context"
	"time"
)

// Every calls f every d until ctx is done, the first time d after the call.
func Every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// NowAndEvery calls f at once, then every d until ctx is done.
func NowAndEvery(ctx context.Context, d time.Duration, f func()) {
	f()
	Every(ctx, d, f)
}
