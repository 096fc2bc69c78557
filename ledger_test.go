package revguard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// memFeed is an in-memory EventFeed. Consumed checks that the follower never reports
// an event consumed before its ledger has it.
type memFeed struct {
	mu       sync.Mutex
	cond     *sync.Cond
	events   []revguard.Event
	consumed []uint64
	ledger   *memLedger
	failRead int // fail this many ReadEvents calls
	reads    []uint64
	err      error // first rule broken
}

func newMemFeed(l *memLedger) *memFeed {
	f := &memFeed{ledger: l}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *memFeed) append(n int) {
	f.mu.Lock()
	for range n {
		seq := uint64(len(f.events) + 1)
		f.events = append(f.events, revguard.Event{Seq: seq, Type: revguard.EventReserved,
			Time: t0.Add(time.Duration(seq) * time.Millisecond), SKU: "s", ReservationID: fmt.Sprintf("r%06d", seq)})
	}
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *memFeed) ReadEvents(ctx context.Context, after uint64, max int) ([]revguard.Event, error) {
	stop := context.AfterFunc(ctx, func() { f.mu.Lock(); f.cond.Broadcast(); f.mu.Unlock() })
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, after)
	if f.failRead > 0 {
		f.failRead--
		return nil, errors.New("feed: injected failure")
	}
	for uint64(len(f.events)) <= after {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		f.cond.Wait()
	}
	return slices.Clone(f.events[after:min(uint64(len(f.events)), after+uint64(max))]), nil
}

func (f *memFeed) Consumed(seq uint64) {
	last := f.ledger.durable()
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq > last && f.err == nil {
		f.err = fmt.Errorf("Consumed(%d) while the ledger holds only up to %d", seq, last)
	}
	f.consumed = append(f.consumed, seq)
}

// memLedger is an in-memory Ledger that can fail or block ApplyEvents.
type memLedger struct {
	mu        sync.Mutex
	lastSeq   uint64
	rows      map[string]int // reservation id → times applied
	batches   []int
	failApply int           // fail this many ApplyEvents calls
	gate      chan struct{} // when set, ApplyEvents waits for it

	// Set by syncLedger: what is applied is durable only once Sync has returned.
	syncing    bool
	durableSeq uint64
	failSync   int // fail this many Sync calls
}

func newMemLedger() *memLedger { return &memLedger{rows: map[string]int{}} }

func (l *memLedger) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeq
}

// durable returns the seq up to which the ledger would survive a crash of the machine.
func (l *memLedger) durable() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.syncing {
		return l.durableSeq
	}
	return l.lastSeq
}

// syncLedger is a memLedger that is a revguard.LedgerSyncer.
type syncLedger struct{ *memLedger }

func newSyncLedger() syncLedger {
	l := newMemLedger()
	l.syncing = true
	return syncLedger{l}
}

func (l syncLedger) Sync(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failSync > 0 {
		l.failSync--
		return 0, errors.New("ledger: injected sync failure")
	}
	l.durableSeq = l.lastSeq
	return l.lastSeq, nil
}

func (l *memLedger) ApplyEvents(ctx context.Context, events []revguard.Event) error {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failApply > 0 {
		l.failApply--
		return errors.New("ledger: injected failure")
	}
	l.batches = append(l.batches, len(events))
	for _, ev := range events {
		if ev.Seq <= l.lastSeq {
			continue
		}
		if ev.Seq != l.lastSeq+1 {
			return fmt.Errorf("gap: %d after %d", ev.Seq, l.lastSeq)
		}
		l.rows[ev.ReservationID]++
		l.lastSeq = ev.Seq
	}
	return nil
}

func (l *memLedger) LastApplied(context.Context) (uint64, error) { return l.last(), nil }

func (l *memLedger) FindOrders(context.Context, revguard.OrderFilter) (revguard.OrderPage, error) {
	return revguard.OrderPage{}, errors.New("not used")
}

// startWriter runs w until the test ends and returns a func that stops it and checks
// that Run returned nil.
func startWriter(t *testing.T, w *revguard.LedgerWriter) (stop func()) {
	t.Helper()
	if w.Logger == nil {
		w.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil after cancel", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitApplied(t *testing.T, w *revguard.LedgerWriter, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WaitApplied(ctx, seq); err != nil {
		t.Fatalf("WaitApplied(%d): %v (applied %d)", seq, err, w.Applied())
	}
}

func checkFeed(t *testing.T, f *memFeed) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		t.Fatal(f.err)
	}
}

func TestLedgerWriter(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		l := newMemLedger()
		f := newMemFeed(l)
		f.append(2500)
		w := &revguard.LedgerWriter{Feed: f, Ledger: l, BatchSize: 1000}
		startWriter(t, w)
		waitApplied(t, w, 2500)
		f.append(10) // later events follow
		waitApplied(t, w, 2510)

		l.mu.Lock()
		for id, n := range l.rows {
			if n != 1 {
				t.Errorf("%s applied %d times", id, n)
			}
		}
		if len(l.rows) != 2510 {
			t.Errorf("ledger holds %d reservations, want 2510", len(l.rows))
		}
		for _, b := range l.batches {
			if b > 1000 {
				t.Errorf("batch of %d events, BatchSize 1000", b)
			}
		}
		l.mu.Unlock()
		if got, want := w.LastEventTime(), t0.Add(2510*time.Millisecond); !got.Equal(want) {
			t.Errorf("LastEventTime = %v, want %v", got, want)
		}
		if w.Lag() != 0 {
			t.Errorf("Lag = %v when caught up, want 0", w.Lag())
		}
		checkFeed(t, f)
		f.mu.Lock()
		if last := f.consumed[len(f.consumed)-1]; last != 2510 {
			t.Errorf("last Consumed = %d, want 2510", last)
		}
		f.mu.Unlock()
	})

	t.Run("Resume", func(t *testing.T) {
		l := newMemLedger()
		f := newMemFeed(l)
		f.append(300)
		if err := l.ApplyEvents(context.Background(), f.events[:120]); err != nil {
			t.Fatal(err)
		}
		w := &revguard.LedgerWriter{Feed: f, Ledger: l, BatchSize: 64}
		startWriter(t, w)
		waitApplied(t, w, 300)
		f.mu.Lock()
		if f.reads[0] != 120 || f.consumed[0] != 120 {
			t.Errorf("first read after %d, first Consumed %d; want 120 and 120 (the ledger's position)", f.reads[0], f.consumed[0])
		}
		f.mu.Unlock()
		checkFeed(t, f)
		if len(l.rows) != 300 {
			t.Errorf("ledger holds %d, want 300", len(l.rows))
		}
	})

	t.Run("RetryApply", func(t *testing.T) {
		l := newMemLedger()
		l.failApply = 3
		f := newMemFeed(l)
		f.append(50)
		w := &revguard.LedgerWriter{Feed: f, Ledger: l, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
		startWriter(t, w)
		waitApplied(t, w, 50)
		checkFeed(t, f)
		if l.failApply != 0 || len(l.rows) != 50 {
			t.Errorf("after retries: %d failures left, %d rows; want 0 and 50", l.failApply, len(l.rows))
		}
	})

	// A LedgerSyncer's batches are reported consumed only once Sync made them durable,
	// also those an earlier run applied; a failed Sync is retried.
	t.Run("Sync", func(t *testing.T) {
		for _, failSync := range []int{0, 3} {
			l := newSyncLedger()
			l.failSync = failSync
			f := newMemFeed(l.memLedger)
			f.append(600)
			if err := l.ApplyEvents(context.Background(), f.events[:120]); err != nil {
				t.Fatal(err)
			}
			w := &revguard.LedgerWriter{Feed: f, Ledger: l, BatchSize: 64, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
			startWriter(t, w)
			waitApplied(t, w, 600)
			deadline := time.Now().Add(10 * time.Second)
			for w.Durable() != 600 {
				if time.Now().After(deadline) {
					t.Fatalf("failSync=%d: Durable stays %d after applying 600", failSync, w.Durable())
				}
				time.Sleep(time.Millisecond)
			}
			checkFeed(t, f)
			f.mu.Lock()
			if n := len(f.consumed); n == 0 || f.consumed[n-1] != 600 || !slices.IsSorted(f.consumed) {
				t.Errorf("failSync=%d: Consumed calls %v, want increasing up to 600", failSync, f.consumed)
			}
			f.mu.Unlock()
		}
	})

	t.Run("RetryRead", func(t *testing.T) {
		l := newMemLedger()
		f := newMemFeed(l)
		f.failRead = 2
		f.append(5)
		w := &revguard.LedgerWriter{Feed: f, Ledger: l, MinBackoff: time.Millisecond}
		startWriter(t, w)
		waitApplied(t, w, 5)
		checkFeed(t, f)
	})

	t.Run("Lag", func(t *testing.T) {
		l := newMemLedger()
		l.gate = make(chan struct{})
		f := newMemFeed(l)
		f.append(10)
		now := t0.Add(5 * time.Second)
		w := &revguard.LedgerWriter{Feed: f, Ledger: l, Now: func() time.Time { return now }}
		startWriter(t, w)
		// The batch is read but its apply is blocked: lag is the age of its first event.
		deadline := time.Now().Add(10 * time.Second)
		for w.Lag() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("Lag stays 0 while a batch is pending")
			}
			time.Sleep(time.Millisecond)
		}
		if want := 5*time.Second - time.Millisecond; w.Lag() != want {
			t.Errorf("Lag = %v, want %v", w.Lag(), want)
		}
		if w.Applied() != 0 {
			t.Errorf("Applied = %d before the apply finished", w.Applied())
		}
		close(l.gate)
		waitApplied(t, w, 10)
		if w.Lag() != 0 {
			t.Errorf("Lag = %v after catching up, want 0", w.Lag())
		}
	})

	t.Run("StopWhileBlocked", func(t *testing.T) {
		l := newMemLedger()
		l.gate = make(chan struct{}) // never opened
		f := newMemFeed(l)
		f.append(3)
		w := &revguard.LedgerWriter{Feed: f, Ledger: l}
		stop := startWriter(t, w)
		time.Sleep(10 * time.Millisecond)
		stop() // Run must return although ApplyEvents never completes on its own
		if w.Applied() != 0 {
			t.Errorf("Applied = %d, want 0", w.Applied())
		}
		checkFeed(t, f)
	})

	t.Run("WaitAppliedCancel", func(t *testing.T) {
		w := &revguard.LedgerWriter{}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := w.WaitApplied(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitApplied on a cancelled context = %v", err)
		}
		if err := w.WaitApplied(ctx, 0); err != nil {
			t.Fatalf("WaitApplied(0) = %v, want nil at once", err)
		}
	})

	t.Run("ErrMissingDeps", func(t *testing.T) {
		if err := (&revguard.LedgerWriter{}).Run(context.Background()); err == nil {
			t.Fatal("Run without Feed and Ledger: no error")
		}
	})
}

func TestDiffLedger(t *testing.T) {
	r := func(id string, status revguard.Status) revguard.Reservation {
		return revguard.Reservation{ID: id, SKU: "s", CustomerID: "c", Quantity: 1, Status: status,
			CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	}
	with := func(x revguard.Reservation, f func(*revguard.Reservation)) revguard.Reservation { f(&x); return x }
	tests := []struct {
		name           string
		engine, ledger []revguard.Reservation
		want           []string
	}{
		{"Equal", []revguard.Reservation{r("a", "held"), r("b", "confirmed")},
			[]revguard.Reservation{r("b", "confirmed"), r("a", "held")}, nil},
		{"Empty", nil, nil, nil},
		{"Missing", []revguard.Reservation{r("a", "held"), r("b", "held")}, []revguard.Reservation{r("a", "held")},
			[]string{"b: missing from the ledger"}},
		{"Extra", []revguard.Reservation{r("a", "held")}, []revguard.Reservation{r("a", "held"), r("z", "held")},
			[]string{"z: in the ledger but not in the engine"}},
		{"Status", []revguard.Reservation{r("a", "confirmed")}, []revguard.Reservation{r("a", "held")},
			[]string{"a: status differs: engine confirmed, ledger held"}},
		{"Fields", []revguard.Reservation{with(r("a", "confirmed"), func(x *revguard.Reservation) {
			x.ConfirmedAt, x.OrderRef, x.Quantity = t0.Add(time.Nanosecond), "o-1", 2
		})}, []revguard.Reservation{r("a", "confirmed")}, []string{
			"a: confirmed_at differs: engine 2026-11-27T10:00:00.000000001Z, ledger null",
			`a: order_ref differs: engine "o-1", ledger ""`,
			"a: quantity differs: engine 2, ledger 1",
		}},
		{"TimeZone", []revguard.Reservation{with(r("a", "held"), func(x *revguard.Reservation) {
			x.CreatedAt = t0.In(time.FixedZone("X", 3600))
		})}, []revguard.Reservation{r("a", "held")}, nil},
		{"Duplicate", []revguard.Reservation{r("a", "held")}, []revguard.Reservation{r("a", "held"), r("a", "held")},
			[]string{"a: duplicate: 1 times in the engine, 2 times in the ledger"}},
		{"DuplicateExtra", nil, []revguard.Reservation{r("q", "held"), r("q", "held")},
			[]string{"q: duplicate: 0 times in the engine, 2 times in the ledger", "q: in the ledger but not in the engine"}},
		{"DuplicateMissing", []revguard.Reservation{r("q", "held"), r("q", "held")}, nil,
			[]string{"q: duplicate: 2 times in the engine, 0 times in the ledger", "q: missing from the ledger"}},
		{"Sorted", []revguard.Reservation{r("c", "held"), r("a", "held")}, []revguard.Reservation{r("b", "held")},
			[]string{"a: missing from the ledger", "b: in the ledger but not in the engine", "c: missing from the ledger"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range revguard.DiffLedger(tt.engine, tt.ledger) {
				got = append(got, d.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("DiffLedger:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}
