package main

import (
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// newPeakDetector tells a follower of the journal (the ledger writer, the change
// writer), whose position applied returns, when the hot path is at a peak: while the
// journal takes at least 1,000 events a second over windows of window (0: the
// default, 100ms).
func newPeakDetector(j *journal.Journal, applied func() uint64, window time.Duration) *revguard.PeakDetector {
	return &revguard.PeakDetector{Last: j.LastSeq, Applied: applied, Window: window}
}

// changesPeakWindow is the change writer's: shorter than the ledger writer's, so that it
// stands aside within 20ms of a drop's start (BenchmarkReserveObserved: with 100ms, the
// start of each burst paid for the change log and the webhooks).
const changesPeakWindow = 20 * time.Millisecond
