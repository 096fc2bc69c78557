package main

import (
	"context"
	"sync"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// sharedJournal lets two followers read one journal (the ledger writer and the change
// writer): the journal may drop an event only once both have it, so it is told the
// lower of the two positions.
type sharedJournal struct {
	j *journal.Journal

	mu  sync.Mutex
	pos [2]uint64 // by follower; guarded by mu, which also orders the calls of Consumed
}

// follower returns the EventFeed of follower i (0 or 1).
func (s *sharedJournal) follower(i int) revguard.EventFeed { return &journalFollower{s: s, i: i} }

type journalFollower struct {
	s *sharedJournal
	i int
}

func (f *journalFollower) ReadEvents(ctx context.Context, after uint64, max int) ([]revguard.Event, error) {
	return f.s.j.ReadEvents(ctx, after, max)
}

func (f *journalFollower) Consumed(seq uint64) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pos[f.i] = max(s.pos[f.i], seq)
	s.j.Consumed(min(s.pos[0], s.pos[1]))
}

// firstSeq is the change writer's FirstSeq: the oldest event the journal still has, or
// the next one when it holds none (all compacted), 1 for a new journal.
func (s *sharedJournal) firstSeq() uint64 {
	if f := s.j.FirstSeq(); f > 0 {
		return f
	}
	return s.j.LastSeq() + 1
}
