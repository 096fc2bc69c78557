package journal_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/revenueguard/revguard/journal"
)

// makeJournal writes n test events to a new journal (one batch each) and returns its
// directory.
func makeJournal(tb testing.TB, n int, segSize int64) string {
	tb.Helper()
	dir := tb.TempDir()
	j := MustOpenJournal(tb, dir, segmentSize(segSize))
	appendN(tb, j, 1, n)
	if err := j.Close(); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// copyDir copies the segment files of src to a new directory.
func copyDir(tb testing.TB, src string) string {
	tb.Helper()
	dst := tb.TempDir()
	for _, path := range segmentFiles(tb, src) {
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(path)), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// TestTornTail cuts the last record at every byte offset: Open loses only that record,
// truncates the file to the end of the previous one, and the journal goes on.
func TestTornTail(t *testing.T) {
	const n = 20
	src := makeJournal(t, n, 1<<20)
	last := segmentFiles(t, src)[0]
	data := readFile(t, last)
	start := lastRecordOffset(t, data)

	check := func(t *testing.T, dir string, wantLast uint64, wantSize int64) {
		t.Helper()
		j := MustOpenJournal(t, dir)
		if j.LastSeq() != wantLast {
			t.Fatalf("LastSeq = %d, want %d", j.LastSeq(), wantLast)
		}
		path := filepath.Join(dir, filepath.Base(last))
		if info, err := os.Stat(path); err != nil || info.Size() != wantSize {
			t.Fatalf("segment size after Open = %v (%v), want %d", info.Size(), err, wantSize)
		}
		appendN(t, j, int(wantLast)+1, 1)
		j.Close()
		j = MustOpenJournal(t, dir)
		if got, want := replayAll(t, j, 0), seqRange(1, wantLast+1); !slices.Equal(got, want) {
			t.Fatalf("Replay after repair and one more append = %v, want %v", got, want)
		}
	}

	for cut := start; cut < int64(len(data)); cut++ {
		dir := copyDir(t, src)
		if err := os.Truncate(filepath.Join(dir, filepath.Base(last)), cut); err != nil {
			t.Fatal(err)
		}
		t.Run("Cut"+itoa(cut-start), func(t *testing.T) { check(t, dir, n-1, start) })
	}

	garbage := map[string][]byte{
		"Zeros":      make([]byte, 4096),
		"Text":       []byte(strings.Repeat("not a record ", 50)),
		"HugeLength": {0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5},
		"HalfHeader": {10, 0, 0},
		// A frame whose length fits but whose checksum is wrong.
		"BadChecksum": append([]byte{4, 0, 0, 0, 1, 2, 3, 4}, 1, 2, 0, 0),
	}
	for name, g := range garbage {
		t.Run("Garbage"+name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := filepath.Join(dir, filepath.Base(last))
			if err := os.WriteFile(path, append(slices.Clone(data), g...), 0o644); err != nil {
				t.Fatal(err)
			}
			check(t, dir, n, int64(len(data)))
		})
	}
}

// TestCorruption damages acknowledged data anywhere but at the tail: Open must fail
// with ErrCorrupt and name the file, never drop data silently.
func TestCorruption(t *testing.T) {
	const n = 40
	src := makeJournal(t, n, 512)
	files := segmentFiles(t, src)
	if len(files) < 3 {
		t.Fatalf("want at least 3 segments, have %d", len(files))
	}
	// expectCorrupt opens dir as a writer, which must fail, and as a reader, which must
	// fail too when the damage is not in the last segment (where it stops instead,
	// as the tail may be in progress).
	expectCorrupt := func(t *testing.T, dir, file string, inLastSegment bool) {
		t.Helper()
		r, rerr := openJournal(t, dir, readOnly)
		if inLastSegment {
			if rerr != nil {
				t.Fatalf("read-only Open with damage in the last segment: %v", rerr)
			}
			if r.LastSeq() >= n {
				t.Fatalf("read-only Open read %d events past the damage", r.LastSeq())
			}
		} else if !errors.Is(rerr, journal.ErrCorrupt) || !strings.Contains(rerr.Error(), file) {
			t.Fatalf("read-only Open: %v, want an error wrapping ErrCorrupt naming %s", rerr, file)
		}
		before := snapshotDir(t, dir)
		_, err := openJournal(t, dir)
		if !errors.Is(err, journal.ErrCorrupt) {
			t.Fatalf("Open: %v, want an error wrapping ErrCorrupt", err)
		}
		if !strings.Contains(err.Error(), file) {
			t.Fatalf("Open error %q does not name %s", err, file)
		}
		delete(before, "LOCK")
		after := snapshotDir(t, dir)
		delete(after, "LOCK")
		if !maps.Equal(before, after) {
			t.Fatal("a failed Open changed the segment files")
		}
	}

	flipEvery := func(t *testing.T, file string, lo, hi int64, inLastSegment bool) {
		for off := lo; off < hi; off++ {
			dir := copyDir(t, src)
			path := filepath.Join(dir, filepath.Base(file))
			data := readFile(t, path)
			data[off] ^= 0x10
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Run(filepath.Base(file)+"@"+itoa(off), func(t *testing.T) {
				expectCorrupt(t, dir, filepath.Base(file), inLastSegment)
			})
		}
	}

	t.Run("MiddleRecordOfLastSegment", func(t *testing.T) {
		last := files[len(files)-1]
		offs := recordOffsets(t, readFile(t, last))
		if len(offs) < 3 {
			t.Fatalf("last segment has %d records, want 3+", len(offs))
		}
		flipEvery(t, last, offs[1], offs[2], true)
	})
	t.Run("LastRecordOfOlderSegment", func(t *testing.T) {
		older := files[len(files)-2]
		data := readFile(t, older)
		flipEvery(t, older, lastRecordOffset(t, data), int64(len(data)), false)
	})
	t.Run("HeaderOfOlderSegment", func(t *testing.T) {
		flipEvery(t, files[0], 0, 24, false)
	})
	t.Run("TruncatedOlderSegment", func(t *testing.T) {
		dir := copyDir(t, src)
		path := filepath.Join(dir, filepath.Base(files[1]))
		data := readFile(t, path)
		if err := os.Truncate(path, int64(len(data)-3)); err != nil {
			t.Fatal(err)
		}
		expectCorrupt(t, dir, filepath.Base(files[1]), false)
	})
	t.Run("MissingMiddleSegment", func(t *testing.T) {
		dir := copyDir(t, src)
		if err := os.Remove(filepath.Join(dir, filepath.Base(files[1]))); err != nil {
			t.Fatal(err)
		}
		expectCorrupt(t, dir, filepath.Base(files[2]), false)
	})
	t.Run("WrongFile", func(t *testing.T) {
		dir := copyDir(t, src)
		name := filepath.Base(files[len(files)-1])
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("#!/bin/sh\n", 20)), 0o644); err != nil {
			t.Fatal(err)
		}
		expectCorrupt(t, dir, name, false) // a wrong file is refused by readers too
	})
}

// TestTornHeader: a crash while a new segment was being created leaves a last segment
// with an incomplete header and no records. Open completes it and goes on.
func TestTornHeader(t *testing.T) {
	const n = 10
	for _, content := range [][]byte{nil, make([]byte, 10), make([]byte, 24)} {
		t.Run("Bytes"+itoa(int64(len(content))), func(t *testing.T) {
			dir := makeJournal(t, n, 1<<20)
			name := "00000000000000000011.log"
			if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
				t.Fatal(err)
			}
			r := MustOpenJournal(t, dir, readOnly)
			if r.LastSeq() != n {
				t.Fatalf("read-only LastSeq = %d, want %d", r.LastSeq(), n)
			}
			r.Close()

			j := MustOpenJournal(t, dir)
			if j.LastSeq() != n {
				t.Fatalf("LastSeq = %d, want %d", j.LastSeq(), n)
			}
			appendN(t, j, n+1, 2)
			j.Close()
			j = MustOpenJournal(t, dir)
			if got, want := replayAll(t, j, 0), seqRange(1, n+2); !slices.Equal(got, want) {
				t.Fatalf("Replay = %v, want %v", got, want)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
