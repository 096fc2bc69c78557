package journal

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/revenueguard/revguard"
)

func openTest(t *testing.T, dir string, opts ...func(*Journal)) *Journal {
	t.Helper()
	j := New(dir)
	j.NoSync = true
	j.Logger = slog.New(slog.DiscardHandler)
	for _, o := range opts {
		o(j)
	}
	if err := j.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func event(i int) *revguard.Event {
	return &revguard.Event{Type: revguard.EventReserved, Time: time.Unix(int64(i), 0), SKU: "s",
		ReservationID: "r", CustomerID: "c", Quantity: 1}
}

// faultyFile fails writes or fsyncs on demand, as a full or failing disk would.
type faultyFile struct {
	segmentFile
	failWrite, failSync bool
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if f.failWrite {
		// A short write: half the batch reaches the file.
		n, _ := f.segmentFile.WriteAt(p[:len(p)/2], off)
		return n, syscall.ENOSPC
	}
	return f.segmentFile.WriteAt(p, off)
}

func (f *faultyFile) Datasync() error {
	if f.failSync {
		return syscall.EIO
	}
	return f.segmentFile.Datasync()
}

// TestFailure makes the active file fail under pending waiters: every pending and later
// Wait and Append fails, nothing is acknowledged that is not durable, and a reopened
// journal has every acknowledged event.
func TestFailure(t *testing.T) {
	cases := []struct {
		name   string
		inject func(j *Journal)
	}{
		{"ClosedFile", func(j *Journal) { j.file.Close() }},
		{"ShortWrite", func(j *Journal) { j.file = &faultyFile{segmentFile: j.file, failWrite: true} }},
		{"SyncError", func(j *Journal) { j.file = &faultyFile{segmentFile: j.file, failSync: true} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openTest(t, dir, func(j *Journal) { j.NoSync = false })
			for i := 1; i <= 5; i++ {
				seq, _ := j.Append(event(i))
				if err := j.Wait(t.Context(), seq); err != nil {
					t.Fatal(err)
				}
			}
			if isClosed(j.Failed()) || j.Err() != nil {
				t.Fatalf("a working journal says it failed: %v", j.Err())
			}
			// The flusher is idle: Wait returned after it closed the batch's channel,
			// and it only touches the file again after the next Append.
			tc.inject(j)

			// Pending events and a Notify on them, then failure.
			seq, _ := j.Append(event(6))
			notified := make(chan struct{})
			j.Notify(seq, notified)

			const writers = 8
			type result struct {
				seq uint64
				err error
			}
			results := make(chan result, writers*10)
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for i := range 10 {
						seq, err := j.Append(event(i))
						if err != nil {
							results <- result{0, err}
							continue
						}
						results <- result{seq, j.Wait(t.Context(), seq)}
					}
				})
			}
			wg.Wait()
			close(results)
			<-notified
			if err := j.Wait(t.Context(), seq); err == nil {
				t.Fatalf("Wait for seq %d after its Notify channel closed on a failure: no error", seq)
			}
			late := make(chan struct{})
			j.Notify(seq, late)
			if !isClosed(late) {
				t.Fatal("Notify on a failed journal did not close the channel at once")
			}
			durable := j.Durable()
			if durable != 5 {
				t.Fatalf("Durable = %d after the failure, want 5", durable)
			}
			failed := 0
			for r := range results {
				if r.err == nil {
					t.Fatalf("seq %d acknowledged after the file failed", r.seq)
				}
				failed++
			}
			if failed != writers*10 {
				t.Fatalf("%d results, want %d", failed, writers*10)
			}
			if _, err := j.Append(event(99)); err == nil {
				t.Fatal("Append after a failure succeeded")
			}
			if !isClosed(j.Failed()) || j.Err() == nil {
				t.Fatalf("after the failure: Failed closed %v, Err %v", isClosed(j.Failed()), j.Err())
			}
			if err := j.Wait(t.Context(), j.LastSeq()); err == nil {
				t.Fatal("Wait for the last seq after a failure succeeded")
			}
			if err := j.Wait(t.Context(), 5); err != nil {
				t.Fatalf("Wait for a seq durable before the failure: %v", err)
			}
			if _, err := j.ReadEvents(t.Context(), 5, 10); err == nil {
				t.Fatal("ReadEvents past the durable events of a failed journal succeeded")
			}
			if err := j.Close(); err == nil {
				t.Fatal("Close of a failed journal reported no error")
			}

			// Every acknowledged event is there; unacknowledged ones may or may not be,
			// but only whole.
			j2 := openTest(t, dir)
			if j2.LastSeq() < 5 {
				t.Fatalf("reopened journal has %d events, want at least the 5 acknowledged", j2.LastSeq())
			}
			var seqs []uint64
			if err := j2.Replay(0, func(ev *revguard.Event) error { seqs = append(seqs, ev.Seq); return nil }); err != nil {
				t.Fatal(err)
			}
			if uint64(len(seqs)) != j2.LastSeq() || seqs[0] != 1 {
				t.Fatalf("replayed %v, LastSeq %d", seqs, j2.LastSeq())
			}
		})
	}
}

// TestGroupCommit holds the flusher inside OnFlush while events accumulate: they must
// be committed together in the next batch, their waiters woken by that one commit, and
// an idle journal must do nothing at all (no polling).
func TestGroupCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var batches []int
		gate := make(chan struct{})
		j := openTest(t, t.TempDir(), func(j *Journal) {
			j.OnFlush = func(events, bytes int, fsync time.Duration) {
				mu.Lock()
				batches = append(batches, events)
				mu.Unlock()
				<-gate
			}
		})
		ctx := context.Background()

		seq, _ := j.Append(event(1))
		synctest.Wait() // the flusher committed seq 1 and is held in OnFlush
		if j.Durable() != seq {
			t.Fatalf("Durable = %d, want %d", j.Durable(), seq)
		}

		// A follower waiting for new events.
		followed := make(chan []revguard.Event, 1)
		go func() {
			evs, _ := j.ReadEvents(ctx, 1, 100)
			followed <- evs
		}()

		woken := make(chan uint64, 9)
		for i := 2; i <= 10; i++ {
			seq, err := j.Append(event(i))
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				if err := j.Wait(ctx, seq); err != nil {
					t.Errorf("Wait(%d): %v", seq, err)
				}
				woken <- seq
			}()
		}

		// Notify: at once for a durable seq, at the commit for a pending one.
		durableCh, pendingCh := make(chan struct{}), make(chan struct{})
		j.Notify(1, durableCh)
		j.Notify(10, pendingCh)
		select {
		case <-durableCh:
		default:
			t.Fatal("Notify for a durable seq did not close the channel at once")
		}

		// A waiter with a deadline gives up while the flusher is held.
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := j.Wait(tctx, 10); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with a deadline while the flusher is held: %v", err)
		}
		synctest.Wait()
		if len(woken) != 0 || len(followed) != 0 || j.Durable() != 1 || isClosed(pendingCh) {
			t.Fatalf("before the second commit: %d waiters woken, follower done %v, Durable %d, notified %v",
				len(woken), len(followed) != 0, j.Durable(), isClosed(pendingCh))
		}

		close(gate)
		synctest.Wait()
		if len(woken) != 9 || j.Durable() != 10 || !isClosed(pendingCh) {
			t.Fatalf("after the second commit: %d of 9 waiters woken, Durable %d, notified %v",
				len(woken), j.Durable(), isClosed(pendingCh))
		}
		if evs := <-followed; len(evs) != 9 || evs[0].Seq != 2 || evs[8].Seq != 10 {
			t.Fatalf("follower got %d events, want seqs 2-10", len(evs))
		}
		mu.Lock()
		got := slices.Clone(batches)
		mu.Unlock()
		if !slices.Equal(got, []int{1, 9}) {
			t.Fatalf("batch sizes = %v, want [1 9]", got)
		}

		// Idle: an hour passes without a single commit or wake-up.
		time.Sleep(time.Hour)
		synctest.Wait()
		if st := j.Stats(); st.Batches != 2 || st.Appends != 10 {
			t.Fatalf("Stats after an idle hour = %+v, want 2 batches, 10 appends", st)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if isClosed(j.Failed()) || j.Err() != nil {
			t.Fatalf("after a clean Close: Failed closed %v, Err %v", isClosed(j.Failed()), j.Err())
		}
	})
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestCloseFlushesPending appends without waiting and closes: Close writes everything.
func TestCloseFlushesPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		gate := make(chan struct{})
		j := openTest(t, dir, func(j *Journal) { j.OnFlush = func(int, int, time.Duration) { <-gate } })
		for i := 1; i <= 50; i++ {
			if _, err := j.Append(event(i)); err != nil {
				t.Fatal(err)
			}
		}
		waited := make(chan error, 1)
		go func() { waited <- j.Wait(context.Background(), 50) }()
		closed := make(chan error, 1)
		go func() { closed <- j.Close() }()
		synctest.Wait()
		close(gate)
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		if err := <-waited; err != nil {
			t.Fatalf("Wait across Close: %v", err)
		}
		if _, err := j.Append(event(51)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Append after Close: %v", err)
		}
		j2 := openTest(t, dir)
		if j2.LastSeq() != 50 {
			t.Fatalf("after Close and reopen LastSeq = %d, want 50", j2.LastSeq())
		}
	})
}

// writeSegment writes a segment file by hand: the header for first, then records for
// the given seqs.
func writeSegment(t *testing.T, dir string, first uint64, seqs ...uint64) string {
	t.Helper()
	data := appendHeader(nil, first)
	for _, s := range seqs {
		ev := event(int(s))
		ev.Seq = s
		data = EncodeEvent(data, ev)
	}
	path := filepath.Join(dir, segmentName(first))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSeqContinuity(t *testing.T) {
	cases := []struct {
		name  string
		write func(t *testing.T, dir string)
		ok    bool
	}{
		{"OK", func(t *testing.T, dir string) {
			writeSegment(t, dir, 5, 5, 6, 7)
			writeSegment(t, dir, 8, 8)
		}, true},
		{"GapInSegment", func(t *testing.T, dir string) { writeSegment(t, dir, 1, 1, 2, 4, 5) }, false},
		{"GapAtTail", func(t *testing.T, dir string) { writeSegment(t, dir, 1, 1, 2, 4) }, false},
		{"Repeat", func(t *testing.T, dir string) { writeSegment(t, dir, 1, 1, 2, 2) }, false},
		{"FirstRecordNotHeaderSeq", func(t *testing.T, dir string) { writeSegment(t, dir, 1, 2, 3) }, false},
		{"GapBetweenSegments", func(t *testing.T, dir string) {
			writeSegment(t, dir, 1, 1, 2)
			writeSegment(t, dir, 4, 4)
		}, false},
		{"OverlapBetweenSegments", func(t *testing.T, dir string) {
			writeSegment(t, dir, 1, 1, 2)
			writeSegment(t, dir, 2, 2)
		}, false},
		{"NameNotHeader", func(t *testing.T, dir string) {
			path := writeSegment(t, dir, 1, 1, 2)
			if err := os.Rename(path, filepath.Join(dir, segmentName(3))); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.write(t, dir)
			for _, ro := range []bool{false, true} {
				j := New(dir)
				j.ReadOnly = ro
				j.Logger = slog.New(slog.DiscardHandler)
				err := j.Open(context.Background())
				if tc.ok {
					if err != nil {
						t.Fatalf("Open(read-only %v): %v", ro, err)
					}
					if j.FirstSeq() != 5 || j.LastSeq() != 8 {
						t.Fatalf("FirstSeq, LastSeq = %d, %d; want 5, 8", j.FirstSeq(), j.LastSeq())
					}
					j.Close()
					continue
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ".log") {
					t.Fatalf("Open(read-only %v): %v, want ErrCorrupt naming the file", ro, err)
				}
			}
		})
	}
}

// slowSync is an active segment file whose fdatasync takes syncTime (of the synctest
// bubble's clock) and touches no disk.
type slowSync struct{ segmentFile }

const syncTime = 400 * time.Microsecond

func (slowSync) Datasync() error {
	time.Sleep(syncTime)
	return nil
}

// runCallers starts a goroutine per entry of rounds that appends and waits for that
// many events, one at a time, and returns the sizes of the batches committed and the
// time each caller took per event after its first (which may wait for an fsync in
// flight). It runs in a synctest bubble on one P, so that the flusher's yields let
// every runnable caller run.
func runCallers(t *testing.T, rounds []int) (batches []int, perEvent []time.Duration) {
	t.Helper()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		j := openTest(t, t.TempDir(), func(j *Journal) {
			j.NoSync = false
			j.Preallocate = -1 // only the commits' fdatasyncs take time
			j.OnFlush = func(events, _ int, _ time.Duration) {
				mu.Lock()
				batches = append(batches, events)
				mu.Unlock()
			}
		})
		j.file = slowSync{j.file} // the flusher is idle: nothing was appended
		perEvent = make([]time.Duration, len(rounds))
		var wg sync.WaitGroup
		for c, n := range rounds {
			wg.Go(func() {
				var start time.Time
				for i := range n {
					seq, err := j.Append(event(i))
					if err == nil {
						err = j.Wait(t.Context(), seq)
					}
					if err != nil {
						t.Error(err)
						return
					}
					if i == 0 {
						start = time.Now()
					}
				}
				if n > 1 {
					perEvent[c] = time.Since(start) / time.Duration(n-1)
				}
			})
		}
		wg.Wait()
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	})
	return batches, perEvent
}

// TestGatherRefill has 8 callers that each wait for one event before appending the
// next. The first batch holds the events appended before the flusher ran (often just
// one) and the others arrive during its fsync; then the flusher waits for the woken
// callers too, and from then on every batch but the last holds all 8 callers.
// Without the gather they would take turns in two part-batches (1,7,1,7 or 4,4,4,4).
func TestGatherRefill(t *testing.T) {
	const callers, rounds = 8, 6
	batches, _ := runCallers(t, slices.Repeat([]int{rounds}, callers))
	total := 0
	for _, n := range batches {
		total += n
	}
	ok := total == callers*rounds && len(batches) >= 3 && len(batches) <= rounds+1
	for i := 1; ok && i < len(batches)-1; i++ {
		ok = batches[i] == callers
	}
	if !ok {
		t.Fatalf("batch sizes %v, want all but the first and last of %d, %d events in all", batches, callers, callers*rounds)
	}
}

// TestGatherNoDelay checks that nobody waits for callers that do not come back: the
// events of a lone caller, and of callers whose partners stop, are durable one fsync
// after they are appended. (A gather that slept until a deadline would add to it.)
func TestGatherNoDelay(t *testing.T) {
	for _, rounds := range [][]int{{20}, {20, 2}, {20, 3, 1}, {10, 10, 5, 2}} {
		batches, perEvent := runCallers(t, rounds)
		for c, d := range perEvent {
			if rounds[c] > 1 && d != syncTime {
				t.Errorf("callers %v: caller %d took %v per event, want one fsync (%v); batches %v",
					rounds, c, d, syncTime, batches)
			}
		}
	}
}

func TestGatherRule(t *testing.T) {
	end := time.Unix(1000, 0)
	cases := []struct {
		name                 string
		fsyncs               []time.Duration
		woken, pending, want int
		until                time.Duration // after end
	}{
		{"NobodyWoken", []time.Duration{200 * time.Microsecond}, 0, 5, 0, 50 * time.Microsecond},
		{"LoneCaller", []time.Duration{200 * time.Microsecond}, 1, 0, 1, 50 * time.Microsecond},
		{"HalfBatches", []time.Duration{200 * time.Microsecond}, 32, 32, 64, 50 * time.Microsecond},
		{"SlowDiskCapped", []time.Duration{2 * time.Millisecond}, 4, 0, 4, maxGather},
		{"NoSync", []time.Duration{0, 0}, 8, 0, 8, 0},
		{"Average", []time.Duration{400 * time.Microsecond, 0}, 1, 0, 1, 350 * time.Microsecond / 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var g gather
			for _, f := range tc.fsyncs {
				g.committed(end, f, tc.woken, tc.pending)
			}
			if g.target != tc.want || g.until != end.Add(tc.until) {
				t.Fatalf("target %d, until end+%v; want %d, end+%v", g.target, g.until.Sub(end), tc.want, tc.until)
			}
		})
	}
}
