package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/revenueguard/revguard"
)

// maxSpareBuffer bounds the batch buffer kept for reuse after a burst.
const maxSpareBuffer = 4 << 20

// The gather after a commit (see flushLoop) lasts at most 1/gatherFraction of the
// recent fsync time, and never more than maxGather.
const (
	gatherFraction = 4
	maxGather      = 100 * time.Microsecond
)

// batch is a group of encoded records that the flusher writes with one write(2) and
// one fsync.
type batch struct {
	buf     []byte
	first   uint64            // seq of the first record
	last    uint64            // seq of the last record; first-1 while empty
	done    chan struct{}     // made by the first Wait that needs it; closed when durable or failed
	notify  []chan<- struct{} // given to Notify; closed with done
	waiters int               // Wait and Notify calls for the batch
}

func (b *batch) reset(first uint64) {
	b.buf = b.buf[:0]
	b.first, b.last = first, first-1
	b.done = nil
	clear(b.notify)
	b.notify = b.notify[:0]
	b.waiters = 0
}

// wake closes b's channels: its events are durable, or will never be.
func (b *batch) wake() {
	if b.done != nil {
		close(b.done)
	}
	for _, ch := range b.notify {
		close(ch)
	}
}

// events returns the number of records in b.
func (b *batch) events() int { return int(b.last + 1 - b.first) }

// gather is the flusher's rule for when the next batch is complete. Owned by the
// flusher goroutine.
//
// Without it the flusher starts the next fsync as soon as one ends, with whatever
// arrived meanwhile. Callers that each wait for their change before making the next
// then split into two half-batches that take turns, one appending while the other's
// fsync runs: twice the fsyncs for the same work. So after a commit that woke some
// waiters, the flusher lets the next batch gather until it holds the events that were
// already pending plus one per event just made durable (their callers coming back;
// one Notify may stand for many callers), or until a short deadline after the
// commit, or until the callers stop coming, whichever is first. The deadline is a
// fraction of the recent fsync time, so a gather costs a bounded share of the
// throughput when callers do not come back; with NoSync it is zero. Nothing is
// delayed when nobody was woken.
//
// The flusher gathers by yielding (runtime.Gosched), not by sleeping: the woken
// callers are runnable, so a yield lets them append; when two yields in a row bring
// no new event, nothing runnable is about to append, and the batch goes at once (two:
// the scheduler sometimes runs a yielding goroutine again before the others). A timer
// would not do: the runtime sleeps at least a millisecond when every goroutine
// waits for a sub-millisecond timer, which would add that to every gather whose
// callers do not come back. So a lone caller is never delayed: it is either back
// after one yield, or not coming.
type gather struct {
	target int           // events that complete the next batch; 0: no gather
	until  time.Time     // no yield after this time
	fsync  time.Duration // moving average of the fsync time
}

// committed sets the rule for the next batch after a commit that ended at end, took
// fsync, and woke woken waiters while pending events were waiting for the next batch.
func (g *gather) committed(end time.Time, fsync time.Duration, woken, pending int) {
	if g.fsync == 0 {
		g.fsync = fsync
	} else {
		g.fsync += (fsync - g.fsync) / 8
	}
	g.target = 0
	if woken > 0 {
		g.target = pending + woken
	}
	g.until = end.Add(min(g.fsync/gatherFraction, maxGather))
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
	b, err := j.batchOf(seq)
	if err != nil {
		j.mu.Unlock()
		return err
	}
	if b.done == nil {
		b.done = make(chan struct{})
	}
	b.waiters++
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

// batchOf returns the batch, not yet durable, that holds seq. The caller holds mu.
func (j *Journal) batchOf(seq uint64) (*batch, error) {
	switch {
	case j.flushing != nil && seq <= j.flushing.last:
		return j.flushing, nil
	case seq <= j.lastSeq:
		return j.cur, nil
	}
	return nil, fmt.Errorf("journal: wait: seq %d was never assigned (last is %d)", seq, j.lastSeq)
}

// Notify closes ch once every event with a seq at or below seq is durable, or once
// the journal failed or closed first: Wait(ctx, seq) then tells which, at once. It
// never blocks (it closes ch at once when seq is already durable or will never be),
// and it is how many callers wait for one seq with a single channel: the flusher
// closes ch together with the batch's own. Nobody else may close ch.
func (j *Journal) Notify(seq uint64, ch chan<- struct{}) {
	if seq <= j.durable.Load() {
		close(ch)
		return
	}
	j.mu.Lock()
	if seq <= j.durable.Load() || j.err != nil || j.cur == nil {
		j.mu.Unlock()
		close(ch)
		return
	}
	b, err := j.batchOf(seq)
	if err != nil {
		j.mu.Unlock()
		close(ch)
		return
	}
	b.notify = append(b.notify, ch)
	b.waiters++
	j.mu.Unlock()
}

// flushLoop is the flusher goroutine. Open starts it; it exits once Close was called and
// everything appended before is written, or right after a write or fsync failure. It
// alone writes j.file and j.active.
func (j *Journal) flushLoop() {
	defer close(j.flusherDone)
	var g gather
	for {
		j.mu.Lock()
		if !j.awaitBatch(&g) {
			j.mu.Unlock()
			return
		}
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

		// Each event of a batch that had waiters counts as a caller woken now, who
		// may come back with the next. Once no longer flushing, b is the flusher's
		// alone (as spare): no Wait or Notify finds it.
		j.mu.Lock()
		j.flushing = nil
		woken, pending := 0, j.cur.events()
		if b.waiters > 0 {
			woken = b.events()
		}
		if cap(b.buf) > maxSpareBuffer {
			b.buf = nil
		}
		j.spare = b
		events, size := b.events(), len(b.buf)
		j.mu.Unlock()
		b.wake()
		j.preallocate()
		g.committed(j.Now(), fsync, woken, pending)
		j.batches.Add(1)
		j.bytes.Add(uint64(size))
		j.syncNanos.Add(uint64(fsync))
		if j.OnFlush != nil {
			j.OnFlush(events, size, fsync)
		}
	}
}

// awaitBatch returns true once j.cur is a batch to commit: it has events, and the
// gather g allows (see gather), or the journal is closing. It returns false when the
// journal is closing and nothing is pending. The flusher calls it with mu held, and
// holds mu again when it returns; it sleeps until an Append when nothing is pending.
func (j *Journal) awaitBatch(g *gather) bool {
	for {
		n := j.cur.events()
		if j.state != stateOpen {
			return n > 0
		}
		for idle := 0; n < g.target && idle < 2 && j.state == stateOpen && j.Now().Before(g.until); {
			j.mu.Unlock()
			runtime.Gosched()
			j.mu.Lock()
			if m := j.cur.events(); m > n {
				n, idle = m, 0
			} else {
				idle++
			}
		}
		g.target = 0 // gathered: only a new commit starts another gather
		if n > 0 {
			return true
		}
		j.idle = true
		j.mu.Unlock()
		select {
		case <-j.wake:
		case <-j.quit:
		}
		j.mu.Lock()
		j.idle = false
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
	if _, err := j.file.WriteAt(b.buf, seg.size); err != nil {
		return 0, fmt.Errorf("journal: write seqs %d-%d to %s: %w", b.first, b.last, seg.path, err)
	}
	var fsync time.Duration
	if !j.NoSync {
		start := j.Now()
		if err := j.file.Datasync(); err != nil {
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

// roll starts a new active segment whose first record will be first. The old segment's
// records were synced by the previous commit; its preallocated space is cut off first,
// durably, so that only the last segment ever ends in zeros.
func (j *Journal) roll(first uint64) (*segment, error) {
	if old := j.active; j.zeroed > old.size {
		if err := j.file.Truncate(old.size); err != nil {
			return nil, fmt.Errorf("journal: truncate full segment %s: %w", old.path, err)
		}
		if err := j.file.Sync(); err != nil {
			return nil, fmt.Errorf("journal: sync full segment %s: %w", old.path, err)
		}
	}
	f, seg, err := createSegment(j.Dir, first, j.NoSync)
	if err != nil {
		return nil, err
	}
	old := j.file
	j.file = osSegment{f}
	j.active = seg
	j.zeroed = seg.size
	j.segMu.Lock()
	j.segs = append(j.segs, seg)
	j.segMu.Unlock()
	if err := old.Close(); err != nil {
		j.Logger.Warn("journal: close full segment", "err", err)
	}
	return seg, nil
}

// zeros is what preallocate writes.
var zeros [64 << 10]byte

// preallocate keeps Preallocate bytes of zeroed, synced space after the active segment's
// last record (see Preallocation): when less than half of it is left, it writes zeros up
// to a full Preallocate ahead (within SegmentSize) and fsyncs them. The flusher calls it
// between commits, when nothing is written past the last record. A failure (a full
// disk) is logged and turns preallocation off: the journal still works, each commit
// growing the file.
func (j *Journal) preallocate() {
	if j.NoSync || j.Preallocate <= 0 || j.preallocOff {
		return
	}
	end := j.active.size
	if j.zeroed-end >= j.Preallocate/2 {
		return
	}
	// Past SegmentSize the next commit starts a new segment: no use zeroing there.
	from, to := max(j.zeroed, end), min(end+j.Preallocate, j.SegmentSize)
	if to <= from {
		return
	}
	for off := from; off < to; {
		n, err := j.file.WriteAt(zeros[:min(int64(len(zeros)), to-off)], off)
		if err != nil {
			j.preallocFailed(err)
			return
		}
		off += int64(n)
	}
	if err := j.file.Sync(); err != nil {
		j.preallocFailed(err)
		return
	}
	j.zeroed = to
}

func (j *Journal) preallocFailed(err error) {
	j.Logger.Warn("journal: cannot preallocate the active segment; group commits will grow the file", "err", err)
	j.preallocOff = true
}

// fail makes the journal failed for good after a write or fsync failure and wakes
// every waiter: the events of b and of the pending batch will never be acknowledged.
func (j *Journal) fail(b *batch, err error) {
	j.mu.Lock()
	j.err = err
	j.flushing = nil
	cur := j.cur
	j.mu.Unlock()
	close(j.failed)
	// With j.err set, no Wait or Notify adds to cur any more.
	b.wake()
	cur.wake()
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
