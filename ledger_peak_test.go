package revguard_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/revenueguard/revguard"
)

// TestLedgerWriterPeak: at a peak the writer leaves events unapplied until the peak
// ends, or until the oldest has waited MaxDefer; without a peak it applies at once.
func TestLedgerWriterPeak(t *testing.T) {
	// start runs a writer on a feed of n events made at the bubble's now, as the
	// journal would time them.
	start := func(t *testing.T, peak *atomic.Bool, n int) (*memLedger, *memFeed, *revguard.LedgerWriter, context.CancelFunc) {
		l := newMemLedger()
		f := newMemFeed(l)
		f.append(n)
		for i := range f.events {
			f.events[i].Time = time.Now()
		}
		w := &revguard.LedgerWriter{Feed: f, Ledger: l, MaxDefer: 10 * time.Second, PeakPoll: 50 * time.Millisecond,
			Peak: peak.Load}
		ctx, cancel := context.WithCancel(context.Background())
		go w.Run(ctx)
		return l, f, w, cancel
	}

	t.Run("OK_AppliedWhenThePeakEnds", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var peak atomic.Bool
			peak.Store(true)
			_, _, w, cancel := start(t, &peak, 100)
			defer cancel()
			time.Sleep(5 * time.Second)
			synctest.Wait()
			if got := w.Applied(); got != 0 {
				t.Fatalf("applied up to %d during a peak of 5s, want nothing before MaxDefer (10s)", got)
			}
			if lag := w.Lag(); lag < 5*time.Second {
				t.Errorf("Lag = %v after 5s of deferral, want at least 5s", lag)
			}
			peak.Store(false)
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			if got := w.Applied(); got != 100 {
				t.Fatalf("applied up to %d once the peak ended, want 100", got)
			}
		})
	})

	t.Run("OK_AppliedAfterMaxDefer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var peak atomic.Bool
			peak.Store(true)
			_, _, w, cancel := start(t, &peak, 10)
			defer cancel()
			time.Sleep(9900 * time.Millisecond)
			synctest.Wait()
			if got := w.Applied(); got != 0 {
				t.Fatalf("applied up to %d before MaxDefer, want 0", got)
			}
			time.Sleep(200 * time.Millisecond)
			synctest.Wait()
			if got := w.Applied(); got != 10 {
				t.Fatalf("applied up to %d after MaxDefer at a peak that goes on, want 10", got)
			}
		})
	})

	t.Run("OK_NoPeakNoWait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var peak atomic.Bool
			_, _, w, cancel := start(t, &peak, 10)
			defer cancel()
			synctest.Wait()
			if got := w.Applied(); got != 10 {
				t.Fatalf("applied up to %d without a peak, want 10 at once", got)
			}
		})
	})
}
