package journal_test

import (
	"encoding/binary"
	"os"
	"slices"
	"testing"

	"github.com/revenueguard/revguard/journal"
)

// TestPreallocate writes with real fsync and preallocation through several segments:
// the active segment keeps zeroed space ahead of its last record, every full segment
// ends at its last record (a read-only Open, which refuses a bad record anywhere but
// in the last segment, accepts them all), and a reopened journal keeps the zeros and
// writes its next records into them, in place, with nothing lost.
func TestPreallocate(t *testing.T) {
	const (
		segSize  = 64 << 10
		prealloc = 16 << 10
		n        = 3000 // ~200 KB of records: several segments
	)
	dir := t.TempDir()
	opts := []func(*journal.Journal){withSync, segmentSize(segSize), func(j *journal.Journal) { j.Preallocate = prealloc }}
	j := MustOpenJournal(t, dir, opts...)
	appendN(t, j, 1, n)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	files := segmentFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("want at least 3 segments, have %d", len(files))
	}
	r := MustOpenJournal(t, dir, readOnly)
	if got, want := replayAll(t, r, 0), seqRange(1, n); !slices.Equal(got, want) {
		t.Fatalf("read-only replay: %d events, want %d", len(got), len(want))
	}
	last := files[len(files)-1]
	data := readFile(t, last)
	end := recordsEnd(t, data)
	if !journal.AllZeroForTest(data[end:]) {
		t.Fatalf("the active segment has other bytes than zeros after its last record at %d", end)
	}
	if zeros := int64(len(data)) - end; zeros < prealloc/2 {
		t.Fatalf("the active segment has %d bytes of zeros after its last record, want at least %d", zeros, prealloc/2)
	}
	for _, f := range files[:len(files)-1] {
		if info, err := os.Stat(f); err != nil || info.Size() < segSize || info.Size() > segSize+4<<10 {
			t.Fatalf("full segment %s has %v bytes (%v), want its records alone, SegmentSize and one batch at most", f, info.Size(), err)
		}
	}

	// Reopen: the zeros stay, the next records go into them, and all replay.
	j = MustOpenJournal(t, dir, opts...)
	if info, err := os.Stat(last); err != nil || info.Size() != int64(len(data)) {
		t.Fatalf("Open changed the active segment from %d to %v bytes (%v)", len(data), info.Size(), err)
	}
	appendN(t, j, n+1, 10)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(last); err != nil || info.Size() != int64(len(data)) {
		t.Fatalf("10 more records grew the active segment from %d to %v bytes (%v), want them in its zeros", len(data), info.Size(), err)
	}
	j = MustOpenJournal(t, dir, opts...)
	if got, want := replayAll(t, j, 0), seqRange(1, n+10); !slices.Equal(got, want) {
		t.Fatalf("replay after reopening: %d events, want %d", len(got), len(want))
	}
}

// recordsEnd returns the offset after the last record of a segment's data, which ends
// in zeros or at the end of the file.
func recordsEnd(tb testing.TB, data []byte) int64 {
	off := lastRecordOffset(tb, data)
	return off + 8 + int64(binary.LittleEndian.Uint32(data[off:]))
}
