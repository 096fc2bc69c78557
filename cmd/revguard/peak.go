package main

import (
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// newPeakDetector tells a follower of the journal (the ledger writer, the change
// writer), whose position applied returns, when the hot path is at a peak: while the
// journal takes at least 1,000 events a second (revguard.PeakDetector's defaults).
func newPeakDetector(j *journal.Journal, applied func() uint64) *revguard.PeakDetector {
	return &revguard.PeakDetector{Last: j.LastSeq, Applied: applied}
}
