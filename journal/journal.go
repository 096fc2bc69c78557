// Package journal is the append-only journal of Revenue Guard's embedded mode: every
// acknowledged change to a SKU is an event in the journal, on disk before the answer
// leaves (see DESIGN.md, "hot-path durability").
//
// # Group commit
//
// [Journal.Append] assigns the next sequence number under a short mutex and encodes the
// event into the pending in-memory batch; it never waits for the disk. One flusher
// goroutine takes the whole pending batch, writes it with one write(2), fdatasyncs (see
// Preallocation), publishes the new durable seq with one atomic store, and wakes that
// batch's waiters. While one fsync runs the next batch accumulates, so batches grow
// with the load and the fsync latency. After a commit the flusher yields to let the
// next batch gather until the callers it just woke have appended again, for at most a
// quarter of the recent fsync time and 100 µs: without that, callers that wait for each
// change before the next split into two half-batches that take turns (see gather in
// commit.go). Nothing is delayed when no caller was woken, and a lone caller never is.
// There is no timer.
// [Journal.Wait] blocks until a seq is durable.
// After a write or fsync failure the journal is failed for good: every later Append and
// Wait returns the error, so nothing is ever acknowledged that may not be on disk.
//
// # Files
//
// Dir holds segment files named after their first seq, 20 decimal digits and ".log"
// (00000000000000000001.log). A segment starts with a 24-byte header:
//
//	"RGJOURNL" | u32 version (1) | u64 first seq | u32 CRC-32C of the 20 bytes before
//
// followed by records, each one event:
//
//	u32 payload length (1 to MaxRecordSize) | u32 CRC-32C (Castagnoli) of payload | payload
//
// All integers of the frame and header are little endian. The payload is
//
//	uvarint seq | byte type | uvarint field mask | fields
//
// where the mask has one bit per Event field that is not zero, and the fields follow
// in bit order: Time (varint Unix seconds, uvarint nanoseconds), SKU, ReservationID
// (uvarint length and bytes, or its 16 bytes when it is a canonical ULID), CustomerID,
// Quantity (varint), ExpiresAt (varint seconds and varint nanoseconds after Time),
// IdempotencyKey, OrderRef, Revived (the bit alone), Stock, PerCustomerLimit, HoldSeconds,
// OpensAt (like ExpiresAt). Every event has exactly one encoding; a decoder refuses any
// other. A reservation event takes 55 to 100 bytes, depending on its ids and key.
//
// Seqs are 1, 2, 3, ... without gaps across segments and restarts. A new segment starts
// when the active one passes SegmentSize; the full one is cut to its last record first.
// [Journal.Compact] deletes whole old segments once the follower (the ledger writer) and
// the engine's snapshot no longer need them, but never the active one, so the next seq
// survives a restart.
//
// # Preallocation
//
// An fsync of a file that grew also commits the inode's new size and blocks to the file
// system's own journal, which on ext4 costs about as much as the data itself. So the
// flusher keeps zeroed, allocated space ahead of the active segment's last record (it
// writes Preallocate bytes of zeros, and fsyncs them, whenever less than half of that is
// left) and writes each batch into it at its offset, then flushes with fdatasync, which
// then has only the data to write. A batch that does not fit grows the file as before
// (fdatasync then includes the size). The zeros past the last record read as a record
// of length 0, which ends the scan at Open like a torn tail; when all of the rest is
// zeros, Open keeps them for the next records instead of cutting them.
//
// # Recovery
//
// Open verifies every record's checksum and the seq continuity. A torn write at the end
// of the last segment (a crash during the write of a batch nobody was told about) is cut
// off, with a log line. Damage anywhere else, such as a bad record followed by intact
// records or a bad record in an older segment, fails Open with an error wrapping
// [ErrCorrupt] that names the file and offset: acknowledged data is never dropped
// silently.
package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"
)

// DefaultSegmentSize is the segment size used when SegmentSize is not set.
const DefaultSegmentSize = 64 << 20

// DefaultPreallocate is the zeroed space kept ahead of the last record when Preallocate
// is not set.
const DefaultPreallocate = 2 << 20

// ErrCorrupt is wrapped by errors about damaged journal data (anything but a torn tail),
// and about events that were requested but compacted away.
var ErrCorrupt = errors.New("journal: corrupt")

// ErrClosed is returned by operations on a closed journal, and by Wait for events that
// could not be made durable before Close.
var ErrClosed = errors.New("journal: closed")

var _ revguard.EventFeed = (*Journal)(nil)

// Journal is an append-only, checksummed, segmented log of events with group commit.
// Set the exported fields before Open; the methods are safe for concurrent use.
type Journal struct {
	// Dir is the folder of the segment files, created if missing.
	Dir string
	// SegmentSize is the size past which the journal starts a new segment;
	// DefaultSegmentSize when zero.
	SegmentSize int64
	// ReadOnly opens the journal beside a running writer, or on stopped data: the
	// journal never writes, truncates or deletes anything, and stops at the first
	// incomplete record of the last segment (which a running writer may still be
	// writing). Events then count as durable as soon as they are complete in the file.
	ReadOnly bool
	// NoSync skips fsync. For tests and benchmarks only: a crash loses data.
	NoSync bool
	// Preallocate is the zeroed space the flusher keeps ahead of the last record (see
	// Preallocation); DefaultPreallocate when zero, none when negative or with NoSync.
	Preallocate int64
	// OnFlush, if set, is called by the flusher after each group commit with the number
	// of events and bytes written and the time fsync took. It must be quick.
	OnFlush func(events int, bytes int, fsync time.Duration)
	// Logger receives warnings such as a truncated torn tail.
	Logger *slog.Logger
	// Now is the clock (fsync timing).
	Now func() time.Time

	// Lock order: roMu, then compactMu, then segMu; mu is never held with any of them.

	// mu guards the write path: the batches and the seq counter.
	mu       sync.Mutex
	state    int // stateNew, stateOpen, stateClosing, stateClosed
	err      error
	lastSeq  uint64 // highest seq assigned
	openSeq  uint64 // lastSeq when Open finished
	cur      *batch // accumulating
	flushing *batch // being written by the flusher, or nil
	spare    *batch // the buffer of the last flushed batch, for reuse
	idle     bool   // the flusher waits for wake

	durable atomic.Uint64 // highest seq durable (writer) or complete in the files (ReadOnly)

	wake        chan struct{} // capacity 1: Append tells an idle flusher there is work
	quit        chan struct{} // closed by Close
	flusherDone chan struct{} // closed by the flusher when it exits
	failed      chan struct{} // closed when a write or fsync failed (see Failed)

	// file and active are the last segment, open for writing, and its bookkeeping.
	// Open sets them; afterwards only the flusher touches them (active's fields are
	// also written under segMu, for readers).
	file        segmentFile
	active      *segment
	zeroed      int64 // the active file's zeroed and synced space ends here (flusher only)
	preallocOff bool  // preallocation failed: off until the next Open (flusher only)

	// segMu guards segs, the contents of the segments in it, and notify.
	segMu  sync.RWMutex
	segs   []*segment    // oldest first; the last is the active segment
	notify chan struct{} // closed at the next group commit, for ReadEvents; nil if none waits

	compactMu   sync.Mutex // serialises Compact
	roMu        sync.Mutex // serialises refresh (ReadOnly)
	consumed    atomic.Uint64
	consumedSet atomic.Bool
	lock        io.Closer // the writer's lock on Dir

	batches   atomic.Uint64
	bytes     atomic.Uint64
	syncNanos atomic.Uint64
}

const (
	stateNew = iota
	stateOpen
	stateClosing
	stateClosed
)

// segmentFile is what the flusher needs of the active segment file (an osSegment);
// tests wrap it to inject write and fsync failures.
type segmentFile interface {
	WriteAt(p []byte, off int64) (int, error)
	// Datasync makes the data written durable, with the metadata needed to read it
	// back (a grown size, new blocks), but not the rest (times).
	Datasync() error
	Truncate(size int64) error
	// Sync makes the data and all the metadata durable.
	Sync() error
	Close() error
}

// osSegment is a segment file on disk.
type osSegment struct{ *os.File }

func (f osSegment) Datasync() error { return datasync(f.File) }

// Stats are counters of a journal since Open.
type Stats struct {
	Appends   uint64 // events appended
	Batches   uint64 // group commits: one write and one fsync each
	Bytes     uint64 // bytes of records written
	SyncNanos uint64 // total time spent in fsync
	Segments  int    // segment files on disk now
}

// New returns a journal on dir with the default settings. Call Open before use.
func New(dir string) *Journal {
	return &Journal{
		Dir:         dir,
		SegmentSize: DefaultSegmentSize,
		Logger:      slog.Default(),
		Now:         time.Now,
	}
}

// Open scans and verifies every segment, truncates a torn tail (unless ReadOnly), and
// starts the flusher goroutine (unless ReadOnly). It fails with an error wrapping
// ErrCorrupt, naming the file and offset, when data is damaged anywhere but at the tail.
func (j *Journal) Open(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state != stateNew {
		return errors.New("journal: open: already opened")
	}
	if j.Dir == "" {
		return errors.New("journal: open: no directory")
	}
	if j.SegmentSize <= 0 {
		j.SegmentSize = DefaultSegmentSize
	}
	if j.Preallocate == 0 {
		j.Preallocate = DefaultPreallocate
	}
	if j.Logger == nil {
		j.Logger = slog.Default()
	}
	if j.Now == nil {
		j.Now = time.Now
	}
	j.quit = make(chan struct{})
	j.flusherDone = make(chan struct{})
	j.failed = make(chan struct{})
	j.wake = make(chan struct{}, 1)

	if j.ReadOnly {
		if err := j.refresh(ctx); err != nil {
			return err
		}
		close(j.flusherDone)
		j.lastSeq = j.durable.Load()
		j.openSeq = j.lastSeq
		j.state = stateOpen
		return nil
	}

	if err := os.MkdirAll(j.Dir, 0o755); err != nil {
		return fmt.Errorf("journal: create %s: %w", j.Dir, err)
	}
	lock, err := lockDir(j.Dir)
	if err != nil {
		return err
	}
	if err := j.load(ctx); err != nil {
		lock.Close()
		return err
	}
	j.lock = lock
	active := j.segs[len(j.segs)-1]
	j.active = active
	j.lastSeq = active.last
	j.openSeq = active.last
	j.durable.Store(active.last)
	j.cur = &batch{first: active.last + 1, last: active.last}
	j.spare = &batch{}
	j.state = stateOpen
	go j.flushLoop()
	return nil
}

// Close flushes and fsyncs the pending batch, stops the flusher and closes the files.
// Waiters of events that could not be written get the failure (or ErrClosed); later
// calls fail with ErrClosed. Close returns the failure that stopped the journal, if any.
// Calling Close again does nothing.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.state != stateOpen {
		j.mu.Unlock()
		return nil
	}
	j.state = stateClosing
	j.mu.Unlock()

	close(j.quit)
	<-j.flusherDone

	j.mu.Lock()
	failure := j.err
	if j.err == nil {
		j.err = ErrClosed
	}
	j.state = stateClosed
	// The flusher drained everything unless it failed, and then it woke the waiters.
	j.mu.Unlock()

	var err error
	if j.file != nil {
		err = j.file.Close()
		if err != nil {
			err = fmt.Errorf("journal: close segment: %w", err)
		}
	}
	if j.lock != nil {
		if lerr := j.lock.Close(); err == nil {
			err = lerr
		}
	}
	if failure != nil {
		return failure
	}
	return err
}

// Failed returns a channel closed when a write or an fsync fails: the journal then
// refuses every append for good, and the events it had not made durable never will
// be. Only a new Open, which recovers what is on disk, makes a journal on the folder
// writable again. Call it after Open; a Close without a failure does not close it.
func (j *Journal) Failed() <-chan struct{} { return j.failed }

// Err returns the failure that stopped the journal (a write or fsync error), or nil
// while it works and after a Close without a failure.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == ErrClosed {
		return nil
	}
	return j.err
}

// Durable returns the highest seq known to be durable: every event with a seq at or
// below it is on disk.
func (j *Journal) Durable() uint64 { return j.durable.Load() }

// LastSeq returns the highest seq assigned (durable or not).
func (j *Journal) LastSeq() uint64 {
	if j.ReadOnly {
		return j.durable.Load()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lastSeq
}

// FirstSeq returns the lowest seq still on disk, 0 if there is none.
func (j *Journal) FirstSeq() uint64 {
	j.segMu.RLock()
	defer j.segMu.RUnlock()
	for _, s := range j.segs {
		if s.last >= s.first {
			return s.first
		}
	}
	return 0
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	appends := j.lastSeq - j.openSeq
	j.mu.Unlock()
	j.segMu.RLock()
	segments := len(j.segs)
	j.segMu.RUnlock()
	return Stats{
		Appends:   appends,
		Batches:   j.batches.Load(),
		Bytes:     j.bytes.Load(),
		SyncNanos: j.syncNanos.Load(),
		Segments:  segments,
	}
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}
