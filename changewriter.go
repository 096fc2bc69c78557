package revguard

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// DefaultChangeBatch is the default ChangeWriter.BatchSize.
const DefaultChangeBatch = 4096

// ChangeWriter turns the events of a Feed into the changes of a ChangeLog, in order and
// exactly once: the log keeps the journal seq it has reached in the transaction that
// appends the changes, so a restart carries on where the last committed batch ended.
// It is a second follower of the journal beside the LedgerWriter: the journal keeps an
// event until both have it (cmd/revguard passes Feed.Consumed the lower of the two).
// The hot path never waits for it.
//
// Its goroutine is the caller's: Run blocks until ctx is done. ReadChanges, LastChange
// and WaitChanges may be called from any goroutine meanwhile (ChangeReader).
type ChangeWriter struct {
	Feed      EventFeed
	Log       ChangeLog
	BatchSize int // events per read; 0 means DefaultChangeBatch

	// FirstSeq returns the seq of the oldest event the feed still has (0 or 1 when it
	// has every event). On a first start over a feed missing early events, Run seeds
	// the log from the ledger (ChangeSeeder) before it follows the feed.
	FirstSeq func() uint64

	Logger *slog.Logger // defaults to slog.Default()

	// Peak, when set, reports whether the hot path is at a peak, as for the
	// LedgerWriter: the writer then leaves the events it has read until the peak ends
	// or the oldest has waited MaxDefer (0 means DefaultMaxDefer), looking again every
	// PeakPoll (0 means 50ms), so that the change log's transactions never compete
	// with reservations for the CPU and the disk. The event stream and the webhooks
	// lag meanwhile; the dashboard's counts, read from the inventory, do not.
	Peak     func() bool
	MaxDefer time.Duration
	PeakPoll time.Duration

	last    SeqNotifier   // Seq of the newest change in the log
	journal atomic.Uint64 // journal seq the log has reached
	loaded  atomic.Bool   // last holds the log's state (Run has loaded it)
}

// Run follows the feed until ctx is done, then returns nil. A failed read or append is
// logged and retried with backoff, from the state the log holds. It returns an error
// only when Feed or Log is nil.
func (w *ChangeWriter) Run(ctx context.Context) error {
	if w.Feed == nil || w.Log == nil {
		return errors.New("change writer: Feed and Log are required")
	}
	batch := cmp.Or(w.BatchSize, DefaultChangeBatch)
	logger := cmp.Or(w.Logger, slog.Default())
	b := backoff{min: 10 * time.Millisecond, max: 5 * time.Second}
	for ctx.Err() == nil {
		err := w.follow(ctx, batch)
		if ctx.Err() != nil {
			break
		}
		logger.Error("change writer: follow the journal", "after", w.journal.Load(), "err", err)
		if !b.wait(ctx) {
			break
		}
	}
	return nil
}

// follow loads the log's state and appends the changes of each batch of events until
// a read or an append fails, or ctx ends.
func (w *ChangeWriter) follow(ctx context.Context, batch int) error {
	st, err := w.Log.LoadChangeState(ctx)
	if err != nil {
		return err
	}
	if st.JournalSeq == 0 && st.LastSeq == 0 && w.FirstSeq != nil && w.FirstSeq() > 1 {
		seeder, ok := w.Log.(ChangeSeeder)
		if !ok {
			return errors.New("change writer: the journal lacks its first events and the log cannot be seeded")
		}
		if err := seeder.SeedChanges(ctx); err != nil {
			return err
		}
		if st, err = w.Log.LoadChangeState(ctx); err != nil {
			return err
		}
	}
	w.journal.Store(st.JournalSeq)
	w.last.Publish(st.LastSeq)
	w.loaded.Store(true)
	syncer, _ := w.Log.(ChangeSyncer)
	if syncer != nil {
		// What an earlier run committed may not be durable yet (it may have been
		// killed before its sync): make it so before telling the feed.
		if err := syncer.SyncChanges(ctx); err != nil {
			return err
		}
	}
	w.Feed.Consumed(st.JournalSeq)
	c := NewChanges(st)
	var out []Change
	unsynced, lastSync := false, time.Now()
	sync := func() error {
		if err := syncer.SyncChanges(ctx); err != nil {
			return err
		}
		unsynced, lastSync = false, time.Now()
		w.Feed.Consumed(st.JournalSeq)
		return nil
	}
	for {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if unsynced {
			// Wake up to sync if no event comes before the interval ends.
			rctx, cancel = context.WithDeadline(ctx, lastSync.Add(ChangeSyncInterval))
		}
		events, err := w.Feed.ReadEvents(rctx, st.JournalSeq, batch)
		cancel()
		if err != nil && unsynced && ctx.Err() == nil && rctx.Err() != nil {
			if err := sync(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if !WaitPeak(ctx, w.Peak, events[0].Time, w.MaxDefer, w.PeakPoll, nil) {
			return ctx.Err()
		}
		out = out[:0]
		for i := range events {
			out = c.Apply(out, &events[i])
		}
		end := events[len(events)-1].Seq
		if err := w.Log.AppendChanges(ctx, out, end, c.Touched()); err != nil {
			return err // the next follow reloads the state the log kept
		}
		st.JournalSeq = end
		w.journal.Store(end)
		if len(out) > 0 {
			w.last.Publish(out[len(out)-1].Seq)
		}
		if syncer == nil {
			w.Feed.Consumed(end)
			continue
		}
		unsynced = true
		if time.Since(lastSync) >= ChangeSyncInterval {
			if err := sync(); err != nil {
				return err
			}
		}
	}
}

// JournalSeq returns the journal seq up to which the log has turned events into changes.
func (w *ChangeWriter) JournalSeq() uint64 { return w.journal.Load() }

// ReadChanges returns up to max changes with Seq > after, from the log.
func (w *ChangeWriter) ReadChanges(ctx context.Context, after uint64, max int) ([]Change, error) {
	return w.Log.ReadChanges(ctx, after, max)
}

// LastChange returns the Seq of the newest change in the log (0 before Run has read it).
func (w *ChangeWriter) LastChange() uint64 { return w.last.Load() }

// ReadLastChange is LastChange once Run has loaded the log's state: this writer is
// the log's only one, and a change is readable from the log only once LastChange
// counts it. Before (a process starting), it reads the log's state itself.
func (w *ChangeWriter) ReadLastChange(ctx context.Context) (uint64, error) {
	if w.loaded.Load() {
		return w.last.Load(), nil
	}
	st, err := w.Log.LoadChangeState(ctx)
	if err != nil {
		return 0, err
	}
	return max(st.LastSeq, w.last.Load()), nil
}

// WaitChanges blocks until a change with Seq > after is in the log, or ctx is done.
func (w *ChangeWriter) WaitChanges(ctx context.Context, after uint64) error {
	return w.last.Wait(ctx, after)
}

var _ ChangeReader = (*ChangeWriter)(nil)
