package tick_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/revenueguard/revguard/internal/tick"
)

// TestEvery counts the calls over 3.5 ticks of virtual time, and checks that the
// loop returns once its context ends.
func TestEvery(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(context.Context, time.Duration, func())
		want int
	}{
		{"Every", tick.Every, 3},             // at 1, 2 and 3 s
		{"NowAndEvery", tick.NowAndEvery, 4}, // at 0, 1, 2 and 3 s
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				n := 0
				done := make(chan struct{})
				go func() { defer close(done); tc.run(ctx, time.Second, func() { n++ }) }()
				time.Sleep(3500 * time.Millisecond)
				synctest.Wait()
				if n != tc.want {
					t.Errorf("%d calls in 3.5 s; want %d", n, tc.want)
				}
				cancel()
				<-done
			})
		})
	}
}
