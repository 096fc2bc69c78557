package revguard

import (
	"cmp"
	"context"
	"sync"
	"time"
)

// Defaults of a PeakDetector. A drop sells its stock at thousands of holds a second; a
// shop's ordinary trickle of changes stays far below, and the followers of the journal
// then keep up at once.
const (
	DefaultPeakRate       = 1000
	DefaultPeakWindow     = 100 * time.Millisecond
	DefaultPeakMaxBacklog = 2_000_000
)

// PeakDetector tells a follower of the journal (the ledger writer, the change writer)
// when the hot path is at a peak, from the rate at which Last grows: at least Rate
// events a second over windows of Window. MaxBacklog bounds the deferral by size as
// the follower's MaxDefer bounds it by time: once Last is that far ahead of Applied,
// it is no longer a peak, so that the journal (which keeps the events until its
// followers have them) stays small. Peak may be called from any goroutine.
type PeakDetector struct {
	Last       func() uint64 // the journal's last seq
	Applied    func() uint64 // the follower's position
	Rate       float64       // events a second; 0 means DefaultPeakRate
	Window     time.Duration // 0 means DefaultPeakWindow
	MaxBacklog uint64        // 0 means DefaultPeakMaxBacklog

	mu   sync.Mutex
	at   time.Time // start of the current window
	seq  uint64    // Last then
	peak bool      // the verdict of the last full window
}

// Peak reports whether the last full window saw a peak rate of appends and the
// backlog is still within bounds.
func (p *PeakDetector) Peak() bool {
	now, seq := time.Now(), p.Last()
	p.mu.Lock()
	defer p.mu.Unlock()
	rate, window, backlog := p.Rate, p.Window, p.MaxBacklog
	if rate == 0 {
		rate = DefaultPeakRate
	}
	if window == 0 {
		window = DefaultPeakWindow
	}
	if backlog == 0 {
		backlog = DefaultPeakMaxBacklog
	}
	if p.at.IsZero() {
		p.at, p.seq = now, seq
	}
	if d := now.Sub(p.at); d >= window {
		p.peak = float64(seq-p.seq) >= rate*d.Seconds()
		p.at, p.seq = now, seq
	}
	return p.peak && seq-min(seq, p.Applied()) < backlog
}

// WaitPeak is how a follower of the journal stands aside at a peak: it waits while
// peak reports one and the oldest work waiting, which happened at oldest, has waited
// less than maxDefer (0 means DefaultMaxDefer), asking peak every poll (0 means 50ms);
// now is the clock (nil: time.Now). A nil peak never waits. It reports false when ctx
// ended first.
func WaitPeak(ctx context.Context, peak func() bool, oldest time.Time, maxDefer, poll time.Duration, now func() time.Time) bool {
	if peak == nil {
		return true
	}
	maxDefer, poll = cmp.Or(maxDefer, DefaultMaxDefer), cmp.Or(poll, 50*time.Millisecond)
	if now == nil {
		now = time.Now
	}
	for now().Sub(oldest) < maxDefer && peak() {
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
	return true
}
