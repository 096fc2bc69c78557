package journal_test

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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

	// Zeros alone are preallocated space (see Preallocation): Open keeps them, and the
	// next append overwrites them in place (check replays it).
	t.Run("PreallocatedZeros", func(t *testing.T) {
		dir := copyDir(t, src)
		path := filepath.Join(dir, filepath.Base(last))
		if err := os.WriteFile(path, append(slices.Clone(data), make([]byte, 4096)...), 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, dir, n, int64(len(data))+4096)
	})
	garbage := map[string][]byte{
		"ZerosAfterText": append([]byte("torn"), make([]byte, 4096)...),
		"Text":           []byte(strings.Repeat("not a record ", 50)),
		"HugeLength":     {0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5},
		"HalfHeader":     {10, 0, 0},
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

// recordOffsets returns the offsets of the records of a segment file's content, which
// ends at the end of the file or at its preallocated zeros (a record of length 0).
func recordOffsets(tb testing.TB, data []byte) []int64 {
	tb.Helper()
	var offs []int64
	for off := 24; off < len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 {
			break
		}
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
