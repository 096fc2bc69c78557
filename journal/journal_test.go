package journal_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
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
