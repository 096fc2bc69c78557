package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/revenueguard/revguard"
)

// maxSpareBuffer bounds the batch buffer kept for reuse after a burst.
const maxSpareBuffer = 4 << 20

// batch is a group of encoded records that the flusher writes with one write(2) and
// one fsync.
type batch struct {
	buf   []byte
	first uint64        // seq of the first record
	last  uint64        // seq of the last record; first-1 while empty
	done  chan struct{} // made by the first Wait that needs it; closed when durable or failed
}

func (b *batch) reset(first uint64) {
	b.buf = b.buf[:0]
	b.first, b.last = first, first-1
	b.done = nil
}

// Append assigns ev.Seq the next sequence number and adds the event to the pending
// batch. It does not wait for the disk: call Wait with the returned seq before telling
// anyone the change happened. Seqs follow the order of the calls. Append fails after
// Close, after a write failure, in ReadOnly mode, for an unknown event type, and for an
// event whose record would exceed MaxRecordSize.
func (j *Journal) Append(ev *revguard.Event) (uint64, error) {
	if ev == nil {
		return 0, errors.New("journal: append: nil event")
	}
	if !validType(ev.Type) {
		return 0, fmt.Errorf("journal: append: unknown event type %d", ev.Type)
	}
	// Encode all but the seq before taking the lock, on the stack for a usual event,
	// so that the lock covers only a copy and a checksum.
	var scratch [256]byte
	body := appendBody(scratch[:0], ev)
	if size := len(body) + binary.MaxVarintLen64; size > MaxRecordSize {
		return 0, fmt.Errorf("journal: append: record of up to %d bytes exceeds %d", size, MaxRecordSize)
	}
	j.mu.Lock()
	if j.err != nil || j.state != stateOpen || j.ReadOnly {
		err := j.stateErr()
		j.mu.Unlock()
		return 0, err
	}
	seq := j.lastSeq + 1
	ev.Seq = seq
	b := j.cur
	b.buf = appendRecord(b.buf, seq, body)
	j.lastSeq = seq
	b.last = seq
	if j.idle {
		j.idle = false
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
	j.mu.Unlock()
	return seq, nil
}

// stateErr says why the journal takes no appends. The caller holds mu.
func (j *Journal) stateErr() error {
	switch {
	case j.err != nil:
		return j.err
	case j.state == stateNew:
		return errors.New("journal: not open")
	case j.ReadOnly:
		return errors.New("journal: read-only")
	}
	return ErrClosed
}

// Wait blocks until every event with a seq at or below seq is durable, ctx is done, or
// the journal failed or closed first (then it returns that error: never a false
// acknowledgement). When seq is already durable it costs one atomic load.
func (j *Journal) Wait(ctx context.Context, seq uint64) error {
	if seq <= j.durable.Load() {
		return nil
	}
	j.mu.Lock()
	if seq <= j.durable.Load() {
		j.mu.Unlock()
		return nil
	}
	if j.err != nil || j.cur == nil {
		err := j.stateErr()
		j.mu.Unlock()
		return err
	}
	var b *batch
	switch {
	case j.flushing != nil && seq <= j.flushing.last:
		b = j.flushing
	case seq <= j.lastSeq:
		b = j.cur
	default:
		last := j.lastSeq
		j.mu.Unlock()
		return fmt.Errorf("journal: wait: seq %d was never assigned (last is %d)", seq, last)
	}
	if b.done == nil {
		b.done = make(chan struct{})
	}
	done := b.done
	j.mu.Unlock()

	if ctxDone := ctx.Done(); ctxDone == nil {
		<-done
	} else {
		select {
		case <-done:
		case <-ctxDone:
			return fmt.Errorf("journal: wait for seq %d: %w", seq, ctx.Err())
		}
	}
	if seq <= j.durable.Load() {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stateErr()
}

// flushLoop is the flusher goroutine. Open starts it; it exits once Close was called and
// everything appended before is written, or right after a write or fsync failure. It
// alone writes j.file and j.active.
func (j *Journal) flushLoop() {
	defer close(j.flusherDone)
	for {
		j.mu.Lock()
		for j.cur.last < j.cur.first {
			if j.state != stateOpen {
				j.mu.Unlock()
				return
			}
			j.idle = true
			j.mu.Unlock()
			select {
			case <-j.wake:
			case <-j.quit:
			}
			j.mu.Lock()
		}
		j.idle = false
		b := j.cur
		next := j.spare
		next.reset(b.last + 1)
		j.cur, j.spare, j.flushing = next, nil, b
		j.mu.Unlock()

		fsync, err := j.commit(b)
		if err != nil {
			j.fail(b, err)
			return
		}

		j.mu.Lock()
		done := b.done
		j.flushing = nil
		if cap(b.buf) > maxSpareBuffer {
			b.buf = nil
		}
		j.spare = b
		events, size := int(b.last-b.first+1), len(b.buf)
		j.mu.Unlock()
		if done != nil {
			close(done)
		}
		j.batches.Add(1)
		j.bytes.Add(uint64(size))
		j.syncNanos.Add(uint64(fsync))
		if j.OnFlush != nil {
			j.OnFlush(events, size, fsync)
		}
	}
}

// commit writes b to the active segment (rolling first when it is full), fsyncs, and
// publishes the new durable seq.
func (j *Journal) commit(b *batch) (time.Duration, error) {
	seg := j.active
	if seg.size >= j.SegmentSize && seg.last >= seg.first {
		var err error
		if seg, err = j.roll(b.first); err != nil {
			return 0, err
		}
	}
	if _, err := j.file.Write(b.buf); err != nil {
		return 0, fmt.Errorf("journal: write seqs %d-%d to %s: %w", b.first, b.last, seg.path, err)
	}
	var fsync time.Duration
	if !j.NoSync {
		start := j.Now()
		if err := j.file.Sync(); err != nil {
			return 0, fmt.Errorf("journal: sync seqs %d-%d to %s: %w", b.first, b.last, seg.path, err)
		}
		fsync = j.Now().Sub(start)
	}

	j.segMu.Lock()
	seg.addIndex(b.first, seg.size)
	seg.size += int64(len(b.buf))
	seg.last = b.last
	notify := j.notify
	j.notify = nil
	j.segMu.Unlock()
	j.durable.Store(b.last)
	if notify != nil {
		close(notify)
	}
	return fsync, nil
}

// roll starts a new active segment whose first record will be first. The old segment
// was fsynced by the previous commit.
func (j *Journal) roll(first uint64) (*segment, error) {
	f, seg, err := createSegment(j.Dir, first, j.NoSync)
	if err != nil {
		return nil, err
	}
	old := j.file
	j.file = f
	j.active = seg
	j.segMu.Lock()
	j.segs = append(j.segs, seg)
	j.segMu.Unlock()
	if err := old.Close(); err != nil {
		j.Logger.Warn("journal: close full segment", "err", err)
	}
	return seg, nil
}

// fail makes the journal failed for good after a write or fsync failure and wakes
// every waiter: the events of b and of the pending batch will never be acknowledged.
func (j *Journal) fail(b *batch, err error) {
	j.mu.Lock()
	j.err = err
	j.flushing = nil
	dones := []chan struct{}{b.done, j.cur.done}
	j.mu.Unlock()
	for _, d := range dones {
		if d != nil {
			close(d)
		}
	}
	// Wake ReadEvents too: no more events will come.
	j.segMu.Lock()
	notify := j.notify
	j.notify = nil
	j.segMu.Unlock()
	if notify != nil {
		close(notify)
	}
	j.Logger.Error("journal: failed, refusing every further append", "err", err)
}
