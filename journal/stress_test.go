package journal_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestConcurrentAppendWait runs many appenders (Append, then Wait, with real fsync), a
// follower (ReadEvents, Consumed) and a compactor at once, across segment rolls. Then:
// every seq was handed out once and they are contiguous, every acknowledged event is
// durable, the follower saw each event once in order with the content its appender
// wrote, and a reopened journal replays exactly them.
func TestConcurrentAppendWait(t *testing.T) {
	const (
		appenders = 16
		perWriter = 150
		total     = appenders * perWriter
	)
	dir := t.TempDir()
	j := MustOpenJournal(t, dir, withSync, segmentSize(8<<10))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	var mu sync.Mutex
	written := make(map[uint64]revguard.Event, total) // by seq

	var appendWG sync.WaitGroup
	for w := range appenders {
		appendWG.Go(func() {
			for i := range perWriter {
				ev := revguard.Event{Type: revguard.EventReserved, Time: t0, SKU: fmt.Sprintf("sku-%d", w%3),
					ReservationID: fmt.Sprintf("w%d-i%d", w, i), CustomerID: fmt.Sprint(w), Quantity: int64(i + 1)}
				seq, err := j.Append(&ev)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if err := j.Wait(ctx, seq); err != nil {
					t.Errorf("Wait(%d): %v", seq, err)
					return
				}
				if d := j.Durable(); d < seq {
					t.Errorf("Wait(%d) returned with Durable %d", seq, d)
				}
				mu.Lock()
				if _, dup := written[seq]; dup {
					t.Errorf("seq %d handed out twice", seq)
				}
				written[seq] = ev
				mu.Unlock()
			}
		})
	}

	// The follower reads and consumes everything; the compactor drops what it consumed.
	followed := make(chan []revguard.Event, 1)
	go func() {
		var got []revguard.Event
		var after uint64
		for after < total {
			evs, err := j.ReadEvents(ctx, after, 100)
			if err != nil {
				t.Errorf("ReadEvents(%d): %v", after, err)
				break
			}
			got = append(got, evs...)
			after = evs[len(evs)-1].Seq
			j.Consumed(after)
		}
		followed <- got
	}()
	stopCompact := make(chan struct{})
	compacted := make(chan struct{})
	go func() {
		defer close(compacted)
		for {
			select {
			case <-stopCompact:
				return
			case <-time.After(time.Millisecond):
			}
			if err := j.Compact(j.Durable()); err != nil {
				t.Errorf("Compact: %v", err)
				return
			}
		}
	}()

	appendWG.Wait()
	got := <-followed
	close(stopCompact)
	<-compacted
	if t.Failed() {
		t.FailNow()
	}

	if len(written) != total {
		t.Fatalf("%d acknowledged events, want %d", len(written), total)
	}
	for seq := uint64(1); seq <= total; seq++ {
		if _, ok := written[seq]; !ok {
			t.Fatalf("seq %d missing: seqs are not contiguous", seq)
		}
	}
	if len(got) != total {
		t.Fatalf("follower saw %d events, want %d", len(got), total)
	}
	for i, ev := range got {
		if ev.Seq != uint64(i+1) || !sameEvent(ev, written[ev.Seq]) {
			t.Fatalf("follower event %d = %+v, want %+v", i, ev, written[uint64(i+1)])
		}
	}
	st := j.Stats()
	if st.Appends != total || st.Batches == 0 || st.Batches > total {
		t.Fatalf("Stats = %+v", st)
	}
	t.Logf("%d events in %d batches (%.1f events/fsync), %d segments left", st.Appends, st.Batches,
		float64(st.Appends)/float64(st.Batches), st.Segments)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j2 := MustOpenJournal(t, dir)
	first := j2.FirstSeq()
	if j2.LastSeq() != total || first < 1 {
		t.Fatalf("reopened: LastSeq %d, FirstSeq %d", j2.LastSeq(), first)
	}
	n := uint64(0)
	err := j2.Replay(first-1, func(ev *revguard.Event) error {
		n++
		if ev.Seq != first-1+n || !sameEvent(*ev, written[ev.Seq]) {
			return fmt.Errorf("replayed %+v, want %+v", *ev, written[first-1+n])
		}
		return nil
	})
	if err != nil || first-1+n != total {
		t.Fatalf("Replay(%d): %d events, %v", first-1, n, err)
	}
}
