package inproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// DefaultSnapshotEvery is the number of journaled changes between two snapshots when
// Inventory.SnapshotEvery is not set.
const DefaultSnapshotEvery = 200_000

var _ revguard.Inventory = (*Inventory)(nil)

// Inventory is the embedded revguard.Inventory: one serialisation point (a mutex) per
// SKU, every change journaled and durable before its method returns.
//
// A change locks its SKU, expires the SKU's holds that are due, checks the rules,
// appends one event per change to the journal (which assigns its seq and does not
// wait), applies it in memory, publishes the SKU's last seq, and unlocks; only then
// does it wait for its seq to be fsynced, so that the callers of many SKUs share one
// fsync (group commit). Every answer, refusals and reads included, first waits for
// the SKU's last seq to be durable (the output gate): no answer depends on a change
// that a crash could still lose, so histories stay linearizable across crashes.
// Reserves of a busy SKU queue instead of waiting for its lock, and one caller applies
// them all under one lock (inventory_combine.go).
//
// Set the exported fields before Open. Close does not close the journal: its owner
// does, after Close.
type Inventory struct {
	// Journal makes changes durable. It must be open (and opened ReadOnly when the
	// Inventory is ReadOnly).
	Journal *journal.Journal
	// Dir is the folder of the snapshot files, created if missing. Empty: no
	// snapshots, so recovery replays the whole journal, which is never compacted.
	Dir string
	// Now is the clock: hold deadlines, sale opening, reservation times. Nil means
	// the system clock; then the lock-free sold-out refusal and Availability do not
	// read the clock (a read costs more than the rest of the refusal here) and leave
	// holds that fall due to the expirer, which returns their units within a second,
	// normally within a millisecond. With a clock set here every answer is exact at
	// the clock's time.
	Now func() time.Time
	// Logger receives failures of the background goroutines and recovery notes.
	Logger *slog.Logger
	// SnapshotEvery is the number of journaled changes after which a snapshot is
	// written (and the journal compacted); DefaultSnapshotEvery when zero. After a
	// snapshot of more reservations than that, the next waits for as many changes.
	SnapshotEvery int
	// Retention is how long a final reservation (confirmed, released or expired) stays
	// in memory after it became final, with its idempotency key; then it is served
	// from the ledger (evict.go). Zero keeps every reservation in memory.
	Retention time.Duration
	// Archived returns the seq up to which the ledger durably holds every event (the
	// ledger writer's Durable): no reservation leaves memory before the ledger has its
	// final state. Nil keeps every reservation in memory.
	Archived func() uint64
	// ReadOnly opens the state beside a running server, or on a stopped server's data,
	// for revguard verify and export: Open loads the snapshot and replays the journal,
	// starts no goroutine and writes nothing; holds are never expired; every change
	// fails with CodeUnavailable.
	ReadOnly bool

	state    atomic.Int32 // stateNew, stateOpen, stateClosed
	sysClock bool         // Now was nil: the system clock, watched by the expirer

	skus sync.Map // SKU id → *sku; never deleted
	res  resTable // reservation id → *reservation; never deleted
	idem sync.Map // idemKey(customer, key) → *reservation, or *pendingReserve while in flight
	exp  expirer

	skuCount  atomic.Int64
	holdCount atomic.Int64
	applied   atomic.Uint64 // highest seq applied by recovery
	evicted   atomic.Int64  // reservations dropped from memory since Open

	// Snapshots: snapMu serialises writing them (snapshotter and Close) and guards
	// lastSnap, the seq of the newest snapshot (0: none).
	snapMu   sync.Mutex
	lastSnap uint64
	prevSnap uint64        // the snapshot kept as a fallback, 0: none
	snapNext atomic.Uint64 // a change with this seq or more kicks the snapshotter
	snapKick chan struct{} // capacity 1
	// snapCopied, when set (tests, before any snapshot runs), is called by a snapshot
	// with a SKU's id once it copied the SKU and before it encodes the SKU's
	// reservations in parts.
	snapCopied func(sku string)

	stop chan struct{}  // closed by Close: the goroutines exit
	wg   sync.WaitGroup // the expirer and the snapshotter

	errSoldOut *revguard.Error // shared by the allocation-free sold-out refusal
}

const (
	stateNew int32 = iota
	stateOpen
	stateClosed
)

// NewInventory returns an Inventory on the open journal j, with snapshots in dir.
// Call Open before use.
func NewInventory(j *journal.Journal, dir string) *Inventory {
	return &Inventory{
		Journal:       j,
		Dir:           dir,
		Logger:        slog.Default(),
		SnapshotEvery: DefaultSnapshotEvery,
	}
}

// Open recovers the state: it loads the newest valid snapshot, replays the journal's
// events after it, and (unless ReadOnly) starts the expirer and snapshotter goroutines.
func (inv *Inventory) Open(ctx context.Context) error {
	if inv.stop != nil {
		return errors.New("inproc: open: already opened")
	}
	if inv.Journal == nil {
		return errors.New("inproc: open: no journal")
	}
	if inv.ReadOnly != inv.Journal.ReadOnly {
		return fmt.Errorf("inproc: open: inventory ReadOnly=%v needs a journal with the same mode", inv.ReadOnly)
	}
	if inv.Now == nil {
		inv.Now, inv.sysClock = time.Now, true
	}
	if inv.Logger == nil {
		inv.Logger = slog.Default()
	}
	if inv.SnapshotEvery <= 0 {
		inv.SnapshotEvery = DefaultSnapshotEvery
	}
	inv.res.init()
	inv.exp.wake = make(chan struct{}, 1)
	inv.snapKick = make(chan struct{}, 1)
	inv.stop = make(chan struct{})
	inv.errSoldOut = &revguard.Error{Code: revguard.CodeSoldOut, Detail: "not enough units available"}

	if !inv.ReadOnly && inv.Dir != "" {
		if err := os.MkdirAll(inv.Dir, 0o755); err != nil {
			return fmt.Errorf("inproc: create snapshot dir: %w", err)
		}
	}
	if err := inv.recover(ctx); err != nil {
		return err
	}
	inv.snapNext.Store(inv.lastSnap + uint64(inv.SnapshotEvery))
	inv.state.Store(stateOpen)
	if inv.ReadOnly {
		return nil
	}
	inv.wg.Add(2)
	go inv.runExpirer()
	go inv.runSnapshotter()
	if inv.Retention > 0 && inv.Archived != nil {
		inv.wg.Add(1)
		go inv.runEvictor()
	}
	return nil
}

// Close stops the goroutines and writes a final snapshot. It does not close the
// journal. Later changes fail with CodeUnavailable; reads still work.
func (inv *Inventory) Close() error {
	if !inv.state.CompareAndSwap(stateOpen, stateClosed) {
		return nil
	}
	if inv.ReadOnly {
		return nil
	}
	close(inv.stop)
	inv.wg.Wait()
	if err := inv.snapshot(context.Background()); err != nil {
		return fmt.Errorf("inproc: close: %w", err)
	}
	return nil
}

// Stats are gauges of an Inventory.
type Stats struct {
	SKUs    int   // SKUs that exist
	Holds   int   // reservations held now
	Evicted int64 // final reservations dropped from memory since Open (Retention)
}

// Stats returns the current gauges; it takes no lock.
func (inv *Inventory) Stats() Stats {
	return Stats{SKUs: int(inv.skuCount.Load()), Holds: int(inv.holdCount.Load()), Evicted: inv.evicted.Load()}
}

// AppliedSeq returns the highest journal seq reflected in memory. On a ReadOnly
// Inventory it is fixed at Open; on a running one it is the journal's last seq.
func (inv *Inventory) AppliedSeq() uint64 {
	if inv.ReadOnly || inv.state.Load() != stateOpen {
		return inv.applied.Load()
	}
	return inv.Journal.LastSeq()
}

// NextOpening returns the earliest opening time (PutSKU's OpensAt) after after of any
// SKU, and false when no SKU opens after it. It takes no lock: a SKU put meanwhile may
// be missed, and is seen by the next call.
func (inv *Inventory) NextOpening(after time.Time) (time.Time, bool) {
	floor := after.UnixNano()
	var next int64
	inv.skus.Range(func(_, v any) bool {
		s := v.(*sku)
		if at := s.opensAt.Load(); s.exists.Load() && at > floor && (next == 0 || at < next) {
			next = at
		}
		return true
	})
	if next == 0 {
		return time.Time{}, false
	}
	return unixTime(next), true
}

// ForEachSKU calls fn with the state of every SKU, each read under its SKU's lock, in
// no particular order, until fn returns false. Holds past their deadline that no one
// has expired yet are reported held, as journaled; on a running Inventory the states
// may include changes still waiting for their fsync.
func (inv *Inventory) ForEachSKU(fn func(revguard.SKU) bool) {
	inv.skus.Range(func(_, v any) bool {
		s := v.(*sku)
		s.mu.Lock()
		if !s.exists.Load() {
			s.mu.Unlock()
			return true
		}
		sv := s.view()
		s.mu.Unlock()
		return fn(sv)
	})
}

// ForEachReservation calls fn with every reservation, final ones included, until fn
// returns false. Reservations are read under their SKU's lock, a chunk at a time (fn
// is never called under a lock), with the caveats of ForEachSKU.
func (inv *Inventory) ForEachReservation(fn func(revguard.Reservation) bool) {
	const chunk = 512
	buf := make([]revguard.Reservation, 0, chunk)
	inv.skus.Range(func(_, v any) bool {
		s := v.(*sku)
		for i := 0; ; {
			s.mu.Lock()
			if s.book == nil || i >= len(s.book.all) {
				s.mu.Unlock()
				return true
			}
			end := min(i+chunk, len(s.book.all))
			buf = buf[:0]
			for _, r := range s.book.all[i:end] {
				buf = append(buf, r.view())
			}
			s.mu.Unlock()
			i = end
			for _, rv := range buf {
				if !fn(rv) {
					return false
				}
			}
		}
	})
}

// lookup returns the SKU id, or nil.
func (inv *Inventory) lookup(id string) *sku {
	v, ok := inv.skus.Load(id)
	if !ok {
		return nil
	}
	return v.(*sku)
}

func (inv *Inventory) now() int64 { return inv.Now().UnixNano() }

// clock returns the time of a change to s: the clock read at the serialisation point,
// under s.mu, and never before the time of s's last change, so that the times of a
// SKU's changes follow the order in which they are applied even if the clock steps
// back. A change timed so takes units only after every change timed before it gave
// them back: the order history never shows more units taken than the stock.
func (inv *Inventory) clock(s *sku) int64 {
	now := max(inv.now(), s.lastAt)
	s.lastAt = now
	return now
}

// settled reports, for a lock-free reader of a SKU whose earliest hold is due at next
// and whose sale opens at opens, that the sale is open and that no hold is due, so
// that the published counts are the answer. With the system clock, holds that fall
// due are the expirer's (see Now), which saves the clock read.
func (inv *Inventory) settled(next, opens int64) bool {
	if opens == 0 && (next == math.MaxInt64 || inv.sysClock) {
		return true
	}
	now := inv.now()
	return opens <= now && (next > now || inv.sysClock)
}

// writable fails unless changes are allowed.
func (inv *Inventory) writable(ctx context.Context) error {
	switch {
	case inv.ReadOnly:
		return revguard.Errorf(revguard.CodeUnavailable, "the inventory is open read-only")
	case inv.state.Load() != stateOpen:
		return revguard.Errorf(revguard.CodeUnavailable, "the inventory is not open")
	}
	return ctx.Err()
}

// wait is the output gate: it returns once every change up to seq is durable.
func (inv *Inventory) wait(ctx context.Context, seq uint64) error {
	if inv.ReadOnly || seq <= inv.Journal.Durable() {
		return nil
	}
	if err := inv.Journal.Wait(ctx, seq); err != nil {
		return journalErr("wait for fsync", err)
	}
	return nil
}

// gate waits until every change applied to s so far is durable.
func (inv *Inventory) gate(ctx context.Context, s *sku) error {
	return inv.wait(ctx, s.lastSeq.Load())
}

// settle finishes a call whose SKU-locked step returned err with seq as the SKU's last
// seq: a domain answer (success or refusal) is released only once seq is durable; a
// failure of the journal is returned at once.
func (inv *Inventory) settle(ctx context.Context, seq uint64, err error) error {
	if err != nil {
		if _, domain := err.(*revguard.Error); !domain {
			return err
		}
	}
	if werr := inv.wait(ctx, seq); werr != nil {
		return werr
	}
	return err
}

// journalErr maps a journal's error: a closed journal is CodeUnavailable, a done
// context stays as is, and a failed journal is CodeUnavailable with its failure
// beneath.
func journalErr(op string, err error) error {
	switch {
	case errors.Is(err, journal.ErrClosed):
		return revguard.Errorf(revguard.CodeUnavailable, "the journal is closed")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	// The journal failed for good: a write or fsync failed (a full disk, say; the
	// journal logged it). Nothing can be stored until the process restarts and
	// recovers from the disk: unavailable, an outcome a caller treats as unknown.
	return &journalFailure{op: op, err: err}
}

// errJournalFailed is what a journalFailure is for the API. Shared: never modified.
var errJournalFailed = &revguard.Error{Code: revguard.CodeUnavailable,
	Detail: "the journal cannot write: the server must restart"}

// journalFailure is the error of an operation that a failed journal stopped: the
// journal's failure, and errJournalFailed.
type journalFailure struct {
	op  string
	err error
}

func (e *journalFailure) Error() string   { return fmt.Sprintf("inproc: %s: %v", e.op, e.err) }
func (e *journalFailure) Unwrap() []error { return []error{e.err, errJournalFailed} }

// append journals ev. Under the SKU's lock.
func (inv *Inventory) append(ev *revguard.Event) (uint64, error) {
	seq, err := inv.Journal.Append(ev)
	if err != nil {
		return 0, journalErr("append to journal", err)
	}
	return seq, nil
}

// publish makes the changes applied to s up to seq visible to the lock-free readers,
// arms the expirer for s, and kicks the snapshotter when it is due. Under s.mu.
func (inv *Inventory) publish(s *sku, seq uint64) {
	s.lastSeq.Store(seq)
	s.avail.Store(s.available())
	inv.armTimer(s)
	if seq >= inv.snapNext.Load() {
		select {
		case inv.snapKick <- struct{}{}:
		default:
		}
	}
}
