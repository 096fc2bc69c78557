package revguard

import (
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
