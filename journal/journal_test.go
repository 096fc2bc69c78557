package journal_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// MustOpenJournal opens a journal on dir (NoSync unless an option says otherwise) and
// closes it at the end of the test.
func MustOpenJournal(tb testing.TB, dir string, opts ...func(*journal.Journal)) *journal.Journal {
	tb.Helper()
	j, err := openJournal(tb, dir, opts...)
	if err != nil {
		tb.Fatalf("open journal %s: %v", dir, err)
	}
	return j
}

func openJournal(tb testing.TB, dir string, opts ...func(*journal.Journal)) (*journal.Journal, error) {
	tb.Helper()
	j := journal.New(dir)
	j.NoSync = true
	j.Logger = slog.New(slog.DiscardHandler)
	for _, o := range opts {
		o(j)
	}
	if err := j.Open(context.Background()); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { j.Close() })
	return j, nil
}

func segmentSize(n int64) func(*journal.Journal) {
	return func(j *journal.Journal) { j.SegmentSize = n }
}
func readOnly(j *journal.Journal) { j.ReadOnly = true }
func withSync(j *journal.Journal) { j.NoSync = false }

// testEvent returns the i-th event of a deterministic mix of every type.
func testEvent(i int) revguard.Event {
	var id ulid.ULID
	binary.BigEndian.PutUint64(id[8:], uint64(i))
	binary.BigEndian.PutUint16(id[:2], uint16(i))
	at := t0.Add(time.Duration(i) * time.Millisecond)
	ev := revguard.Event{Type: revguard.EventType(1 + i%5), Time: at, SKU: fmt.Sprintf("sku-%d", i%7)}
	switch ev.Type {
	case revguard.EventSKUPut:
		ev.Stock, ev.PerCustomerLimit, ev.HoldSeconds = int64(i), 2, 600
		ev.OpensAt = at.Add(time.Hour)
	case revguard.EventReserved:
		ev.ReservationID, ev.CustomerID, ev.Quantity = id.String(), fmt.Sprintf("cus-%d", i), int64(1+i%3)
		ev.ExpiresAt = at.Add(10 * time.Minute)
		if i%2 == 0 {
			ev.IdempotencyKey = fmt.Sprintf("key-%d", i)
		}
	default:
		ev.ReservationID, ev.CustomerID, ev.Quantity = fmt.Sprintf("res-%d", i), "c", 1
		ev.OrderRef = fmt.Sprint(i)
		ev.Revived = i%3 == 0
	}
	return ev
}

// appendN appends the test events from seq first on, waiting for each to be durable
// (so that every event is its own batch and segments roll predictably).
func appendN(tb testing.TB, j *journal.Journal, first, n int) {
	tb.Helper()
	for i := first; i < first+n; i++ {
		ev := testEvent(i)
		seq, err := j.Append(&ev)
		if err != nil {
			tb.Fatalf("Append(event %d): %v", i, err)
		}
		if seq != uint64(i) || ev.Seq != seq {
			tb.Fatalf("Append(event %d) = seq %d, ev.Seq %d; want %d", i, seq, ev.Seq, i)
		}
		if err := j.Wait(context.Background(), seq); err != nil {
			tb.Fatalf("Wait(%d): %v", seq, err)
		}
	}
}

// replayAll returns the seqs replayed after `after`, checking each event's content.
func replayAll(tb testing.TB, j *journal.Journal, after uint64) []uint64 {
	tb.Helper()
	var seqs []uint64
	err := j.Replay(after, func(ev *revguard.Event) error {
		want := testEvent(int(ev.Seq))
		want.Seq = ev.Seq
		if !sameEvent(*ev, want) {
			return fmt.Errorf("replayed %+v, want %+v", *ev, want)
		}
		seqs = append(seqs, ev.Seq)
		return nil
	})
	if err != nil {
		tb.Fatalf("Replay(%d): %v", after, err)
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func segmentFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestOpen(t *testing.T) {
	t.Run("EmptyDir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new", "journal")
		j := MustOpenJournal(t, dir)
		if j.LastSeq() != 0 || j.Durable() != 0 || j.FirstSeq() != 0 {
			t.Fatalf("LastSeq, Durable, FirstSeq = %d, %d, %d; want 0, 0, 0", j.LastSeq(), j.Durable(), j.FirstSeq())
		}
		if seqs := replayAll(t, j, 0); len(seqs) != 0 {
			t.Fatalf("Replay on an empty journal gave %v", seqs)
		}
		files := segmentFiles(t, dir)
		if len(files) != 1 || filepath.Base(files[0]) != "00000000000000000001.log" {
			t.Fatalf("segment files = %v, want [00000000000000000001.log]", files)
		}
		if got := j.Stats().Segments; got != 1 {
			t.Fatalf("Stats().Segments = %d, want 1", got)
		}
	})
	t.Run("ErrAlreadyOpen", func(t *testing.T) {
		j := MustOpenJournal(t, t.TempDir())
		if err := j.Open(t.Context()); err == nil {
			t.Fatal("second Open succeeded")
		}
	})
	t.Run("ErrSecondWriter", func(t *testing.T) {
		dir := t.TempDir()
		MustOpenJournal(t, dir)
		if _, err := openJournal(t, dir); err == nil {
			t.Fatal("a second writer opened the same directory")
		}
	})
	t.Run("ErrNotOpen", func(t *testing.T) {
		j := journal.New(t.TempDir())
		ev := testEvent(1)
		if _, err := j.Append(&ev); err == nil {
			t.Error("Append before Open succeeded")
		}
		if err := j.Replay(0, func(*revguard.Event) error { return nil }); err == nil {
			t.Error("Replay before Open succeeded")
		}
		if err := j.Close(); err != nil {
			t.Errorf("Close before Open: %v", err)
		}
	})
}

func TestAppend(t *testing.T) {
	t.Run("SeqsContinueAfterRestart", func(t *testing.T) {
		dir := t.TempDir()
		j := MustOpenJournal(t, dir, withSync)
		appendN(t, j, 1, 10)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		ev := testEvent(11)
		if _, err := j.Append(&ev); !errors.Is(err, journal.ErrClosed) {
			t.Fatalf("Append after Close: %v, want ErrClosed", err)
		}
		if err := j.Wait(t.Context(), 10); err != nil {
			t.Fatalf("Wait for a durable seq after Close: %v", err)
		}

		j = MustOpenJournal(t, dir)
		if j.LastSeq() != 10 || j.Durable() != 10 || j.FirstSeq() != 1 {
			t.Fatalf("after restart LastSeq, Durable, FirstSeq = %d, %d, %d; want 10, 10, 1", j.LastSeq(), j.Durable(), j.FirstSeq())
		}
		appendN(t, j, 11, 5)
		if got, want := replayAll(t, j, 0), seqRange(1, 15); !slices.Equal(got, want) {
			t.Fatalf("Replay = %v, want %v", got, want)
		}
		if st := j.Stats(); st.Appends != 5 || st.Batches == 0 || st.Bytes == 0 {
			t.Fatalf("Stats = %+v, want 5 appends and some batches and bytes", st)
		}
	})
	t.Run("ErrBadEvent", func(t *testing.T) {
		j := MustOpenJournal(t, t.TempDir())
		if _, err := j.Append(nil); err == nil {
			t.Error("Append(nil) succeeded")
		}
		bad := revguard.Event{Type: 42}
		if _, err := j.Append(&bad); err == nil {
			t.Error("Append of an unknown type succeeded")
		}
		big := revguard.Event{Type: revguard.EventConfirmed, OrderRef: string(make([]byte, journal.MaxRecordSize))}
		if _, err := j.Append(&big); err == nil || big.Seq != 0 {
			t.Errorf("Append of an oversized event: seq %d, err %v; want an error and no seq", big.Seq, err)
		}
		// The refused events took no seq.
		appendN(t, j, 1, 1)
	})
	t.Run("RollsSegments", func(t *testing.T) {
		dir := t.TempDir()
		j := MustOpenJournal(t, dir, segmentSize(1024))
		appendN(t, j, 1, 100)
		files := segmentFiles(t, dir)
		if len(files) < 3 {
			t.Fatalf("100 events with 1 KiB segments made %d segment files, want several", len(files))
		}
		if j.Stats().Segments != len(files) {
			t.Fatalf("Stats().Segments = %d, files %d", j.Stats().Segments, len(files))
		}
		j.Close()
		j = MustOpenJournal(t, dir, segmentSize(1024))
		if got, want := replayAll(t, j, 0), seqRange(1, 100); !slices.Equal(got, want) {
			t.Fatalf("Replay = %v, want %v", got, want)
		}
	})
}

func TestWait(t *testing.T) {
	j := MustOpenJournal(t, t.TempDir())
	if err := j.Wait(t.Context(), 0); err != nil {
		t.Fatalf("Wait(0): %v", err)
	}
	if err := j.Wait(t.Context(), 1); err == nil {
		t.Fatal("Wait for a seq never assigned succeeded")
	}
	appendN(t, j, 1, 3)
	allocs := testing.AllocsPerRun(100, func() {
		if err := j.Wait(context.Background(), 3); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Wait on a durable seq allocates %v times, want 0", allocs)
	}
}

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

func TestReadOnly(t *testing.T) {
	t.Run("StoppedData", func(t *testing.T) {
		dir := t.TempDir()
		w := MustOpenJournal(t, dir, segmentSize(1024))
		appendN(t, w, 1, 60)
		w.Close()
		files := segmentFiles(t, dir)
		lastFile := files[len(files)-1]
		tearLastRecord(t, lastFile)
		before := snapshotDir(t, dir)

		r := MustOpenJournal(t, dir, readOnly)
		if r.LastSeq() != 59 || r.Durable() != 59 {
			t.Fatalf("read-only view LastSeq %d, Durable %d; want 59", r.LastSeq(), r.Durable())
		}
		if got, want := replayAll(t, r, 0), seqRange(1, 59); !slices.Equal(got, want) {
			t.Fatalf("Replay = %v, want %v", got, want)
		}
		ev := testEvent(60)
		if _, err := r.Append(&ev); err == nil {
			t.Error("Append on a read-only journal succeeded")
		}
		r.Consumed(59)
		if err := r.Compact(59); err == nil {
			t.Error("Compact on a read-only journal succeeded")
		}
		r.Close()
		if after := snapshotDir(t, dir); !maps.Equal(before, after) {
			t.Fatal("the read-only journal changed the directory")
		}
	})
	t.Run("MissingDir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "none")
		r := MustOpenJournal(t, dir, readOnly)
		if r.LastSeq() != 0 {
			t.Fatalf("LastSeq = %d", r.LastSeq())
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the read-only journal created its directory: %v", err)
		}
	})
	t.Run("BesideWriter", func(t *testing.T) {
		dir := t.TempDir()
		const n = 3000
		w := MustOpenJournal(t, dir, segmentSize(4096))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 1; i <= n; i++ {
				ev := testEvent(i)
				if _, err := w.Append(&ev); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if i%10 == 0 {
					w.Wait(context.Background(), uint64(i))
				}
			}
			w.Wait(context.Background(), n)
		}()

		// Fresh read-only opens while the writer runs see growing prefixes.
		var prev uint64
		for range 5 {
			r, err := openJournal(t, dir, readOnly)
			if err != nil {
				t.Fatalf("read-only Open beside a writer: %v", err)
			}
			seqs := replayAll(t, r, 0)
			if !slices.Equal(seqs, seqRange(1, uint64(len(seqs)))) || uint64(len(seqs)) < prev {
				t.Fatalf("read-only replay saw %d events (before: %d), not a growing prefix", len(seqs), prev)
			}
			prev = uint64(len(seqs))
			r.Close()
		}

		// A follower on a read-only journal reads everything, in order.
		r := MustOpenJournal(t, dir, readOnly)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var after uint64
		for after < n {
			evs, err := r.ReadEvents(ctx, after, 500)
			if err != nil {
				t.Fatalf("ReadEvents(%d) beside a writer: %v", after, err)
			}
			for _, ev := range evs {
				if ev.Seq != after+1 {
					t.Fatalf("ReadEvents after %d gave seq %d", after, ev.Seq)
				}
				after = ev.Seq
			}
		}
		<-done
	})
}

// tearLastRecord cuts the last record of a segment file in half.
func tearLastRecord(tb testing.TB, path string) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	off := lastRecordOffset(tb, data)
	if err := os.Truncate(path, off+(int64(len(data))-off)/2); err != nil {
		tb.Fatal(err)
	}
}

// recordOffsets returns the offsets of the records of a segment file's content.
func recordOffsets(tb testing.TB, data []byte) []int64 {
	tb.Helper()
	var offs []int64
	for off := 24; off < len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if _, err := journal.DecodeEvent(data[off : off+8+n]); err != nil {
			tb.Fatalf("record at %d: %v", off, err)
		}
		offs = append(offs, int64(off))
		off += 8 + n
	}
	return offs
}

func lastRecordOffset(tb testing.TB, data []byte) int64 {
	offs := recordOffsets(tb, data)
	return offs[len(offs)-1]
}

// snapshotDir returns every file of dir and its content.
func snapshotDir(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	m := make(map[string]string)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}
