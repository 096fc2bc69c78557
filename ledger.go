package revguard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Limits of a ledger query (docs/api.md, GET /v1/orders).
const (
	DefaultOrderLimit = 100
	MaxOrderLimit     = 1000
)

// OrderFilter selects reservations from the ledger. Empty fields match everything.
type OrderFilter struct {
	SKU         string
	CustomerID  string
	Status      Status // "" for any
	Limit       int    // 1 to MaxOrderLimit; 0 means DefaultOrderLimit
	Cursor      string // opaque, from OrderPage.NextCursor of the same query
	NewestFirst bool   // false: oldest first (GET /v1/orders); true: newest first (GET /v1/me/reservations)
}

// OrderPage is one page of a ledger query. NextCursor is "" on the last page.
type OrderPage struct {
	Items      []Reservation
	NextCursor string
}

// Ledger is the permanent, queryable record of every reservation in its latest state. It
// follows the journal asynchronously: an item may appear, or change state, shortly after
// the change was acknowledged, but never goes missing and never appears twice.
type Ledger interface {
	// ApplyEvents applies events, in order, in one transaction, together with the new last
	// applied sequence number. Events with Seq <= LastApplied are skipped, so a batch
	// applied twice after a crash changes nothing the second time.
	ApplyEvents(ctx context.Context, events []Event) error

	// LastApplied returns the Seq of the last event applied, 0 for none.
	LastApplied(ctx context.Context) (uint64, error)

	// FindOrders returns one page of reservations matching f, ordered by reservation id
	// (creation order). Paging is stable under concurrent inserts. A forged, corrupted or
	// mismatched cursor, or an out-of-range limit, fails with CodeInvalidRequest.
	FindOrders(ctx context.Context, f OrderFilter) (OrderPage, error)
}

// LedgerSyncer is implemented by a Ledger whose ApplyEvents returns once a batch is
// committed (visible to readers, and safe from a crash of the process) but possibly
// before it is durable against a crash of the machine, so that the next batch is
// written while the last one reaches the disk. A LedgerWriter tells its feed that events
// are consumed only up to what Sync has made durable.
type LedgerSyncer interface {
	// Sync makes every batch applied so far durable and returns the Seq of the last
	// event applied, 0 for none.
	Sync(ctx context.Context) (uint64, error)
}

// DefaultLedgerBatch is the default LedgerWriter.BatchSize. Batches are this large only
// while the writer catches up (a caught-up writer applies what is there), and then
// larger is cheaper per event: the pages a batch rewrites (index leaves of hot SKUs,
// the newest ids) are shared by more events. On SQLite, 8,192 caught up a
// 100,000-event burst about a third faster than 1,024, for transactions of a fraction
// of a second that other writes to the same file (sessions) wait behind.
const DefaultLedgerBatch = 8192

// DefaultMaxDefer is the default LedgerWriter.MaxDefer: at a peak, the ledger may fall
// this far behind the journal before it applies anyway.
const DefaultMaxDefer = 30 * time.Second

// LedgerWriter copies the events of a Feed into a Ledger, in order and exactly once: it
// resumes after the Ledger's LastApplied, applies events in batches (one ApplyEvents
// call, one ledger transaction, per batch), and only once they are durable tells the
// Feed that they are consumed, so that the journal never drops an event the ledger
// lacks. The hot path never waits for it.
//
// A Ledger that is a LedgerSyncer is made durable by a second goroutine, which Run
// starts and waits for before it returns: it calls Sync whenever batches were applied
// since its last call, then Feed.Consumed, so that ApplyEvents of the next batch and
// the disk's flush of the last run at the same time. For any other Ledger, Run calls
// Consumed after each ApplyEvents. Either way, Consumed is called by one goroutine at a
// time, with increasing seqs.
//
// Its goroutine is the caller's: Run blocks until ctx is done. Applied, Durable,
// LastEventTime, Lag and WaitApplied may be called from any goroutine meanwhile.
type LedgerWriter struct {
	Feed      EventFeed
	Ledger    Ledger
	BatchSize int // events per ApplyEvents; 0 means DefaultLedgerBatch

	// MinBackoff and MaxBackoff bound the wait before retrying a failed read or apply;
	// it doubles after each failure. Defaults: 10ms and 5s.
	MinBackoff, MaxBackoff time.Duration

	Logger *slog.Logger     // defaults to slog.Default()
	Now    func() time.Time // defaults to time.Now

	// Peak, when set, reports whether the hot path is at a peak (cmd/revguard: the
	// journal's append rate). While it is, the writer leaves the events it has read
	// unapplied, looking again every PeakPoll, until the oldest of them has waited
	// MaxDefer: during a drop the ledger's transactions, and their fsyncs on the same
	// disk as the journal's, then never compete with the hot path for the CPU and the
	// disk, and the writer catches up in large batches in the trough that follows. The
	// feed keeps the events meanwhile, and Lag shows the wait.
	Peak     func() bool
	MaxDefer time.Duration // how long an event may wait for a peak to end; 0 means DefaultMaxDefer
	PeakPoll time.Duration // how often Peak is asked while deferring; 0 means 50ms

	applied     SeqNotifier   // seq of the last event in the ledger
	durable     atomic.Uint64 // seq last passed to Feed.Consumed
	lastTime    atomic.Int64  // unix nanos of that event; 0 for none yet
	pendingTime atomic.Int64  // unix nanos of the oldest event read but not applied; 0 for none
}

// Run follows the feed until ctx is done, then returns nil. A failed read or apply is
// logged and retried with exponential backoff: the writer never skips an event, so a
// ledger that keeps failing shows as a growing lag rather than as a gap. It returns an
// error only when Feed or Ledger is nil.
func (w *LedgerWriter) Run(ctx context.Context) error {
	if w.Feed == nil || w.Ledger == nil {
		return errors.New("ledger writer: Feed and Ledger are required")
	}
	batch := cmp.Or(w.BatchSize, DefaultLedgerBatch)
	logger := cmp.Or(w.Logger, slog.Default())
	b := backoff{min: cmp.Or(w.MinBackoff, 10*time.Millisecond), max: cmp.Or(w.MaxBackoff, 5*time.Second)}

	var last uint64
	for {
		var err error
		if last, err = w.Ledger.LastApplied(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		logger.Error("ledger writer: read last applied seq", "err", err)
		if !b.wait(ctx) {
			return nil
		}
	}
	b.reset()
	w.publish(last, time.Time{})
	syncer, _ := w.Ledger.(LedgerSyncer)
	if syncer != nil {
		// What an earlier run applied may not be durable yet (it may have been killed
		// before its last Sync): make it so before telling the feed.
		for {
			var err error
			if last, err = syncer.Sync(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			logger.Error("ledger writer: sync", "err", err)
			if !b.wait(ctx) {
				return nil
			}
		}
		b.reset()
	}
	// Events up to last were applied by an earlier run: the feed may drop them.
	w.consumed(last)

	var kick chan struct{} // to the sync goroutine: batches were applied since its last Sync
	if syncer != nil {
		kick = make(chan struct{}, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.syncLoop(ctx, syncer, kick, logger)
		}()
		defer func() { <-done }() // it returns once ctx is done, as Run does
	}

	for {
		events, err := w.Feed.ReadEvents(ctx, last, batch)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			logger.Error("ledger writer: read events", "after", last, "err", err)
			if !b.wait(ctx) {
				return nil
			}
			continue
		}
		if len(events) == 0 {
			continue
		}
		if first := events[0].Seq; first != last+1 && first > last {
			logger.Error("ledger writer: gap in the event feed", "after", last, "next", first)
		}
		w.pendingTime.Store(events[0].Time.UnixNano())
		if !WaitPeak(ctx, w.Peak, events[0].Time, w.MaxDefer, w.PeakPoll, w.Now) {
			return nil
		}
		for {
			err := w.Ledger.ApplyEvents(ctx, events)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			logger.Error("ledger writer: apply events", "first", events[0].Seq, "last", events[len(events)-1].Seq, "err", err)
			if !b.wait(ctx) {
				return nil
			}
		}
		b.reset()
		end := events[len(events)-1]
		last = max(last, end.Seq)
		// Clear the lag and, for a ledger durable at each commit, tell the feed before
		// publishing, so that whoever WaitApplied wakes sees a writer already caught up.
		w.pendingTime.Store(0)
		if kick == nil {
			w.consumed(last)
			w.publish(last, end.Time)
			continue
		}
		w.publish(last, end.Time)
		select {
		case kick <- struct{}{}:
		default: // a Sync is already due, and covers this batch
		}
	}
}

// syncLoop is the sync goroutine of Run: after each kick it makes the applied batches
// durable and then reports them consumed, retrying a failed Sync with backoff (the
// journal keeps the events meanwhile). It returns when ctx is done.
func (w *LedgerWriter) syncLoop(ctx context.Context, s LedgerSyncer, kick <-chan struct{}, logger *slog.Logger) {
	b := backoff{min: cmp.Or(w.MinBackoff, 10*time.Millisecond), max: cmp.Or(w.MaxBackoff, 5*time.Second)}
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		for {
			seq, err := s.Sync(ctx)
			if err == nil {
				w.consumed(seq)
				b.reset()
				break
			}
			if ctx.Err() != nil {
				return
			}
			logger.Error("ledger writer: sync", "err", err)
			if !b.wait(ctx) {
				return
			}
		}
	}
}

// consumed tells the feed that every event up to seq is durably in the ledger, then
// publishes seq as Durable, which promises that the feed was told.
func (w *LedgerWriter) consumed(seq uint64) {
	w.Feed.Consumed(seq)
	w.durable.Store(seq)
}

// publish records that every event up to seq is in the ledger and wakes WaitApplied.
func (w *LedgerWriter) publish(seq uint64, t time.Time) {
	if !t.IsZero() {
		w.lastTime.Store(t.UnixNano())
	}
	w.applied.Publish(seq)
}

// Applied returns the seq of the last event known to be in the ledger (0 before Run
// has read the ledger's position). The metric "ledger lag in events" is the feed's
// newest durable seq minus Applied.
func (w *LedgerWriter) Applied() uint64 { return w.applied.Load() }

// Durable returns the seq up to which the ledger is durable and the feed was told that
// events are consumed (0 before Run has read the ledger's position). It trails Applied
// while a LedgerSyncer's Sync is due or running.
func (w *LedgerWriter) Durable() uint64 { return w.durable.Load() }

// LastEventTime returns the time of the newest event this writer applied, or the zero
// time when it has applied none since Run started.
func (w *LedgerWriter) LastEventTime() time.Time {
	n := w.lastTime.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Lag returns how long the oldest event that the writer has read but not yet applied
// has been waiting since it happened, or 0 when the writer is waiting for new events
// (caught up). It is the metric "ledger lag in seconds": it grows while the ledger
// falls behind or keeps failing, and drops to 0 once a batch lands and nothing more is
// queued.
func (w *LedgerWriter) Lag() time.Duration {
	n := w.pendingTime.Load()
	if n == 0 {
		return 0
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	return max(0, now().Sub(time.Unix(0, n)))
}

// WaitApplied blocks until every event up to seq is in the ledger, or ctx is done (then
// it returns ctx.Err()).
func (w *LedgerWriter) WaitApplied(ctx context.Context, seq uint64) error {
	if seq == 0 {
		return nil
	}
	return w.applied.Wait(ctx, seq-1)
}

// backoff is the exponential wait between retries of the ledger writer.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

// wait sleeps for the next backoff step, reporting false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	b.cur = min(max(b.cur*2, b.min), b.max)
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// DiffKind says how the ledger differs from the engine about one reservation.
type DiffKind string

// The kinds of Difference.
const (
	DiffMissing   DiffKind = "missing"   // in the engine, not in the ledger
	DiffExtra     DiffKind = "extra"     // in the ledger, not in the engine
	DiffMismatch  DiffKind = "mismatch"  // in both, with one field different
	DiffDuplicate DiffKind = "duplicate" // more than once in the engine or in the ledger
)

// Difference is one disagreement between the engine and the ledger about reservation ID.
type Difference struct {
	Kind  DiffKind
	ID    string
	Field string // DiffMismatch: the field, named as in docs/api.md ("status", "order_ref", ...)

	// Engine and Ledger are the two values of Field (DiffMismatch), or how many times the
	// id occurs on each side (DiffDuplicate), formatted for people.
	Engine, Ledger string
}

// String formats d as one line of revguard verify's report.
func (d Difference) String() string {
	switch d.Kind {
	case DiffMissing:
		return fmt.Sprintf("%s: missing from the ledger", d.ID)
	case DiffExtra:
		return fmt.Sprintf("%s: in the ledger but not in the engine", d.ID)
	case DiffDuplicate:
		return fmt.Sprintf("%s: duplicate: %s times in the engine, %s times in the ledger", d.ID, d.Engine, d.Ledger)
	}
	return fmt.Sprintf("%s: %s differs: engine %s, ledger %s", d.ID, d.Field, d.Engine, d.Ledger)
}

// DiffLedger compares the reservations of the engine (the serialisation points' state)
// with those of the ledger, and returns every difference, sorted by id then field: each
// reservation must appear exactly once on each side, with equal fields. It is pure: the
// caller chooses what both sides contain (revguard verify compares them at the same
// journal position).
func DiffLedger(engine, ledger []Reservation) []Difference {
	index := func(rs []Reservation) (map[string]Reservation, map[string]int) {
		m := make(map[string]Reservation, len(rs))
		n := make(map[string]int, len(rs))
		for _, r := range rs {
			m[r.ID] = r
			n[r.ID]++
		}
		return m, n
	}
	em, en := index(engine)
	lm, ln := index(ledger)

	var diffs []Difference
	for id, e := range em {
		l, ok := lm[id]
		if !ok {
			diffs = append(diffs, Difference{Kind: DiffMissing, ID: id})
			continue
		}
		if en[id] > 1 || ln[id] > 1 {
			diffs = append(diffs, Difference{Kind: DiffDuplicate, ID: id, Engine: strconv.Itoa(en[id]), Ledger: strconv.Itoa(ln[id])})
		}
		diffs = append(diffs, diffFields(e, l)...)
	}
	for id := range lm {
		if _, ok := em[id]; ok {
			continue
		}
		diffs = append(diffs, Difference{Kind: DiffExtra, ID: id})
		if ln[id] > 1 {
			diffs = append(diffs, Difference{Kind: DiffDuplicate, ID: id, Engine: "0", Ledger: strconv.Itoa(ln[id])})
		}
	}
	for id, n := range en {
		if _, ok := lm[id]; !ok && n > 1 {
			diffs = append(diffs, Difference{Kind: DiffDuplicate, ID: id, Engine: strconv.Itoa(n), Ledger: "0"})
		}
	}
	slices.SortFunc(diffs, func(a, b Difference) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(string(a.Kind), string(b.Kind)), strings.Compare(a.Field, b.Field))
	})
	return diffs
}

// diffFields returns a DiffMismatch for each field in which e and l differ.
func diffFields(e, l Reservation) []Difference {
	var diffs []Difference
	field := func(name, ev, lv string) {
		if ev != lv {
			diffs = append(diffs, Difference{Kind: DiffMismatch, ID: e.ID, Field: name, Engine: ev, Ledger: lv})
		}
	}
	field("sku", e.SKU, l.SKU)
	field("customer_id", e.CustomerID, l.CustomerID)
	field("quantity", strconv.FormatInt(e.Quantity, 10), strconv.FormatInt(l.Quantity, 10))
	field("status", string(e.Status), string(l.Status))
	field("created_at", formatDiffTime(e.CreatedAt), formatDiffTime(l.CreatedAt))
	field("expires_at", formatDiffTime(e.ExpiresAt), formatDiffTime(l.ExpiresAt))
	field("confirmed_at", formatDiffTime(e.ConfirmedAt), formatDiffTime(l.ConfirmedAt))
	field("released_at", formatDiffTime(e.ReleasedAt), formatDiffTime(l.ReleasedAt))
	field("order_ref", strconv.Quote(e.OrderRef), strconv.Quote(l.OrderRef))
	return diffs
}

// formatDiffTime formats t exactly (nanoseconds, UTC), or "null" for the zero time.
func formatDiffTime(t time.Time) string {
	if t.IsZero() {
		return "null"
	}
	return t.UTC().Format(time.RFC3339Nano)
}
