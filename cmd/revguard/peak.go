package main

import (
	"sync"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// A peak is when the journal takes at least peakRate events a second, measured over
// windows of peakWindow; the ledger writer then defers (revguard.LedgerWriter.Peak).
// A drop sells its stock at thousands of holds a second; a shop's ordinary trickle of
// changes stays far below, and the ledger then follows the journal at once.
//
// peakMaxBacklog bounds the deferral by size as MaxDefer bounds it by time: once this
// many events wait for the ledger, it is no longer a peak, so that the journal (which
// keeps them until the ledger has them) stays small.
const (
	peakRate       = 1000
	peakWindow     = 100 * time.Millisecond
	peakMaxBacklog = 2_000_000
)

// peakDetector tells the ledger writer when the hot path is at a peak, from the
// journal's append rate. Its Peak is called by the writer's goroutine only.
type peakDetector struct {
	j *journal.Journal
	w *revguard.LedgerWriter

	mu   sync.Mutex
	at   time.Time // start of the current window
	seq  uint64    // the journal's last seq then
	peak bool      // the verdict of the last full window
}

func newPeakDetector(j *journal.Journal, w *revguard.LedgerWriter) *peakDetector {
	return &peakDetector{j: j, w: w, at: time.Now(), seq: j.LastSeq()}
}

// Peak reports whether the last full window saw a peak rate of appends and the
// backlog is still within bounds.
func (p *peakDetector) Peak() bool {
	now, seq := time.Now(), p.j.LastSeq()
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := now.Sub(p.at); d >= peakWindow {
		p.peak = float64(seq-p.seq) >= peakRate*d.Seconds()
		p.at, p.seq = now, seq
	}
	return p.peak && seq-min(seq, p.w.Applied()) < peakMaxBacklog
}
