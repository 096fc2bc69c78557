package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/revenueguard/revguard"
)

// pollInterval is how often a read-only journal looks at the files for new events
// while ReadEvents waits: it cannot be woken by a writer in another process.
const pollInterval = 50 * time.Millisecond

// span is the part of one segment that a read covers, copied under segMu so that the
// read itself runs without locks.
type span struct {
	path  string
	first uint64 // seq of the record at off
	off   int64
	end   int64  // durable size: nothing at or past it is read
	last  uint64 // seq of the last durable record
}

// spans returns the parts of the segments holding the durable events after a seq. It
// fails with ErrCorrupt when some of those events were compacted away.
func (j *Journal) spans(after uint64) ([]span, error) {
	j.segMu.RLock()
	defer j.segMu.RUnlock()
	if len(j.segs) == 0 {
		return nil, nil
	}
	if first := j.segs[0].first; after+1 < first {
		return nil, corruptf("events after seq %d were compacted away (the journal starts at seq %d)", after, first)
	}
	var out []span
	for _, s := range j.segs {
		if s.last <= after {
			continue
		}
		e := s.seek(after + 1)
		out = append(out, span{path: s.path, first: e.seq, off: e.off, end: s.size, last: s.last})
	}
	return out, nil
}

// each calls fn for the durable events with seq > after, in order, at most max of
// them when max > 0. It verifies checksums and seq continuity on the way. ev is reused
// between calls.
func (j *Journal) each(after uint64, max int, bufSize int, fn func(ev *revguard.Event) error) error {
	spans, err := j.spans(after)
	if err != nil {
		return err
	}
	count := 0
	var ev revguard.Event
	for _, sp := range spans {
		f, err := os.Open(sp.path)
		if errors.Is(err, os.ErrNotExist) {
			return corruptf("segment %s was compacted away while events after seq %d were read",
				filepath.Base(sp.path), after)
		}
		if err != nil {
			return fmt.Errorf("journal: open segment %d: %w", sp.first, err)
		}
		rr := newRecordReader(f, sp.off, sp.end, int(min(int64(bufSize), sp.end-sp.off)))
		err = func() error {
			defer f.Close()
			expect := sp.first
			for {
				off := rr.offset()
				p, err := rr.next()
				if err == io.EOF {
					break
				}
				if bad, ok := errors.AsType[*badRecord](err); ok {
					return corruptf("%s: %v", sp.path, bad)
				}
				if err != nil {
					return err
				}
				if seq, ok := payloadSeq(p); !ok || seq != expect {
					return corruptf("%s: at offset %d: seq %d where %d was expected", sp.path, off, seq, expect)
				}
				expect++
				if expect-1 <= after {
					continue
				}
				if err := decodePayload(p, &ev, true); err != nil {
					return fmt.Errorf("%s: at offset %d: %w", sp.path, off, err)
				}
				if err := fn(&ev); err != nil {
					return err
				}
				count++
				if max > 0 && count >= max {
					return errStop
				}
			}
			if expect != sp.last+1 {
				return corruptf("%s: durable records end at seq %d, not %d", sp.path, expect-1, sp.last)
			}
			return nil
		}()
		if err == errStop {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var errStop = errors.New("stop")

// Replay calls fn for every durable event with a seq above after, in order, and stops
// at fn's first error, which it returns. ev is reused: fn must copy what it keeps. It
// fails with an error wrapping ErrCorrupt when events after `after` were compacted
// away, or when a record read back is damaged. In ReadOnly mode it first looks for
// events written since Open.
func (j *Journal) Replay(after uint64, fn func(ev *revguard.Event) error) error {
	if err := j.readable(); err != nil {
		return err
	}
	if j.ReadOnly {
		if err := j.refresh(context.Background()); err != nil {
			return err
		}
	}
	return j.each(after, 0, 1<<20, fn)
}

// readable fails before Open.
func (j *Journal) readable() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state == stateNew {
		return errors.New("journal: not open")
	}
	return nil
}

// ReadEvents returns up to max durable events with a seq above after, in order. When
// there are none yet it waits for the next group commit (a read-only journal looks at
// the files every 50 ms instead) or for ctx. It fails with an error wrapping ErrCorrupt
// when events after `after` were compacted away, with ErrClosed once the journal is
// closed and every durable event was returned, and with the failure of a failed
// journal.
func (j *Journal) ReadEvents(ctx context.Context, after uint64, max int) ([]revguard.Event, error) {
	if max <= 0 {
		return nil, fmt.Errorf("journal: read events: max %d is not positive", max)
	}
	if err := j.readable(); err != nil {
		return nil, err
	}
	// Typical records are under 128 bytes; the reader grows its buffer for larger ones.
	bufSize := min(256<<10, max*128)
	// A follower that keeps up reads a group commit's few events per call: a slice
	// sized for max (232 bytes an event) would be mostly garbage.
	out := make([]revguard.Event, 0, min(max, 64))
	collect := func(ev *revguard.Event) error {
		out = append(out, *ev)
		return nil
	}
	for {
		if err := j.each(after, max, bufSize, collect); err != nil {
			return nil, err
		}
		if len(out) > 0 {
			return out, nil
		}
		if j.ReadOnly {
			t := time.NewTimer(pollInterval)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("journal: read events: %w", ctx.Err())
			case <-j.quit:
				t.Stop()
				return nil, ErrClosed
			}
			if err := j.refresh(ctx); err != nil {
				return nil, err
			}
			continue
		}

		j.mu.Lock()
		failure := j.err
		j.mu.Unlock()
		if failure != nil {
			return nil, failure
		}
		j.segMu.Lock()
		if len(j.segs) > 0 && j.segs[len(j.segs)-1].last > after {
			j.segMu.Unlock()
			continue
		}
		if j.notify == nil {
			j.notify = make(chan struct{})
		}
		notify := j.notify
		j.segMu.Unlock()
		select {
		case <-notify:
		case <-ctx.Done():
			return nil, fmt.Errorf("journal: read events: %w", ctx.Err())
		case <-j.quit:
			// Close flushes what is pending: return it before reporting the close.
			<-j.flusherDone
			if err := j.each(after, max, bufSize, collect); err != nil || len(out) > 0 {
				return out, err
			}
			return nil, ErrClosed
		}
	}
}

// Consumed records that the follower applied every event with a seq at or below seq,
// so that Compact may delete them.
func (j *Journal) Consumed(seq uint64) {
	for {
		old := j.consumed.Load()
		if seq <= old || j.consumed.CompareAndSwap(old, seq) {
			break
		}
	}
	j.consumedSet.Store(true)
}

// Compact deletes the oldest segments whose events all have a seq at or below both upTo
// (the engine's newest durable snapshot) and the highest seq passed to Consumed. It
// never deletes the active segment, and deletes nothing before Consumed is first called.
func (j *Journal) Compact(upTo uint64) error {
	if j.ReadOnly {
		return errors.New("journal: compact: read-only")
	}
	if err := j.readable(); err != nil {
		return err
	}
	if !j.consumedSet.Load() {
		return nil
	}
	limit := min(upTo, j.consumed.Load())

	j.compactMu.Lock()
	defer j.compactMu.Unlock()
	j.segMu.Lock()
	k := 0
	for k < len(j.segs)-1 && j.segs[k].last <= limit {
		k++
	}
	victims := slices.Clone(j.segs[:k])
	j.segs = slices.Clone(j.segs[k:])
	j.segMu.Unlock()
	if k == 0 {
		return nil
	}

	var errs []error
	for _, s := range victims {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("journal: remove %s: %w", s.path, err))
		}
	}
	if !j.NoSync {
		if err := syncDir(j.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	j.Logger.Debug("journal: compacted", "segments", len(victims), "up_to_seq", victims[len(victims)-1].last)
	return errors.Join(errs...)
}
