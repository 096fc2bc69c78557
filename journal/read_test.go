package journal_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

func TestReplay(t *testing.T) {
	dir := t.TempDir()
	const n = 300
	j := MustOpenJournal(t, dir, segmentSize(2048))
	appendN(t, j, 1, n)
	for after := uint64(0); after <= n+2; after++ {
		want := seqRange(after+1, n)
		if got := replayAll(t, j, after); !slices.Equal(got, want) {
			t.Fatalf("Replay(%d) = %v, want %v", after, got, want)
		}
	}
	stop := errors.New("stop here")
	calls := 0
	err := j.Replay(0, func(*revguard.Event) error {
		calls++
		if calls == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 5 {
		t.Fatalf("Replay with fn failing at call 5: %d calls, %v", calls, err)
	}
}

func TestReadEvents(t *testing.T) {
	t.Run("WaitsThenReturns", func(t *testing.T) {
		j := MustOpenJournal(t, t.TempDir())
		type result struct {
			evs []revguard.Event
			err error
		}
		got := make(chan result)
		go func() {
			evs, err := j.ReadEvents(t.Context(), 0, 10)
			got <- result{evs, err}
		}()
		select {
		case r := <-got:
			t.Fatalf("ReadEvents on an empty journal returned %v, %v", r.evs, r.err)
		case <-time.After(20 * time.Millisecond):
		}
		appendN(t, j, 1, 1)
		r := <-got
		if r.err != nil || len(r.evs) != 1 || r.evs[0].Seq != 1 {
			t.Fatalf("ReadEvents = %+v, %v; want event 1", r.evs, r.err)
		}
	})
	t.Run("MaxAndOrder", func(t *testing.T) {
		j := MustOpenJournal(t, t.TempDir(), segmentSize(1024))
		appendN(t, j, 1, 50)
		var after uint64
		for after < 50 {
			evs, err := j.ReadEvents(t.Context(), after, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != int(min(7, 50-after)) {
				t.Fatalf("ReadEvents(%d, 7) returned %d events", after, len(evs))
			}
			for _, ev := range evs {
				after++
				want := testEvent(int(after))
				want.Seq = after
				if !sameEvent(ev, want) {
					t.Fatalf("ReadEvents gave %+v, want %+v", ev, want)
				}
			}
		}
	})
	t.Run("ErrContext", func(t *testing.T) {
		j := MustOpenJournal(t, t.TempDir())
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		if _, err := j.ReadEvents(ctx, 0, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ReadEvents with an expiring context: %v", err)
		}
		if _, err := j.ReadEvents(t.Context(), 0, 0); err == nil {
			t.Fatal("ReadEvents with max 0 succeeded")
		}
	})
	t.Run("ErrClosed", func(t *testing.T) {
		j := MustOpenJournal(t, t.TempDir())
		appendN(t, j, 1, 2)
		errc := make(chan error)
		go func() {
			_, err := j.ReadEvents(t.Context(), 2, 1)
			errc <- err
		}()
		time.Sleep(10 * time.Millisecond)
		j.Close()
		if err := <-errc; !errors.Is(err, journal.ErrClosed) {
			t.Fatalf("ReadEvents across Close: %v, want ErrClosed", err)
		}
		// What is durable stays readable.
		if evs, err := j.ReadEvents(t.Context(), 0, 5); err != nil || len(evs) != 2 {
			t.Fatalf("ReadEvents after Close = %d events, %v; want 2", len(evs), err)
		}
	})
}

func TestCompact(t *testing.T) {
	dir := t.TempDir()
	const n = 400
	j := MustOpenJournal(t, dir, segmentSize(1024))
	appendN(t, j, 1, n)
	before := len(segmentFiles(t, dir))

	if err := j.Compact(n); err != nil {
		t.Fatal(err)
	}
	if got := len(segmentFiles(t, dir)); got != before || j.FirstSeq() != 1 {
		t.Fatalf("Compact before any Consumed: %d -> %d segments, FirstSeq %d", before, got, j.FirstSeq())
	}

	j.Consumed(150)
	j.Consumed(100) // lower: ignored
	if err := j.Compact(120); err != nil {
		t.Fatal(err)
	}
	first := j.FirstSeq()
	if first <= 1 || first > 121 {
		t.Fatalf("after Consumed(150), Compact(120): FirstSeq %d, want in (1, 121]", first)
	}
	if got, want := replayAll(t, j, first-1), seqRange(first, n); !slices.Equal(got, want) {
		t.Fatalf("Replay(%d) = %v, want %v", first-1, got, want)
	}
	if err := j.Replay(first-2, func(*revguard.Event) error { return nil }); !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("Replay from before the compacted point: %v, want ErrCorrupt", err)
	}
	if _, err := j.ReadEvents(t.Context(), 0, 10); !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("ReadEvents from before the compacted point: %v, want ErrCorrupt", err)
	}
	if evs, err := j.ReadEvents(t.Context(), first-1, 1); err != nil || evs[0].Seq != first {
		t.Fatalf("ReadEvents(%d) = %v, %v", first-1, evs, err)
	}

	j.Consumed(n)
	if err := j.Compact(n); err != nil {
		t.Fatal(err)
	}
	files := segmentFiles(t, dir)
	if len(files) != 1 || j.Stats().Segments != 1 {
		t.Fatalf("after compacting everything: files %v, Stats().Segments %d; want the active segment only", files, j.Stats().Segments)
	}
	last := j.FirstSeq()
	j.Close()

	// The next seq survives the restart.
	j = MustOpenJournal(t, dir, segmentSize(1024))
	if j.LastSeq() != n || j.FirstSeq() != last {
		t.Fatalf("after restart LastSeq %d, FirstSeq %d; want %d, %d", j.LastSeq(), j.FirstSeq(), n, last)
	}
	appendN(t, j, n+1, 1)
	if err := j.Compact(n); err != nil {
		t.Fatal(err)
	}
	if j.FirstSeq() != last {
		t.Fatalf("Compact before Consumed in a new process deleted data: FirstSeq %d, want %d", j.FirstSeq(), last)
	}
}
