package journal_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// decodeSeeds are the starting inputs of FuzzDecodeEvent.
func decodeSeeds() [][]byte {
	var seeds [][]byte
	// A valid record of every type and edge case.
	for _, tc := range eventCases {
		seeds = append(seeds, journal.EncodeEvent(nil, &tc.ev))
	}
	valid := journal.EncodeEvent(nil, &eventCases[3].ev)
	seeds = append(seeds,
		nil,                               // empty
		valid[:5],                         // truncated header
		valid[:len(valid)-3],              // truncated payload
		append(slices.Clone(valid), 7),    // trailing byte
		[]byte{0xff, 0xff, 0xff, 0xff},    // huge length, no payload
		[]byte{0, 0, 0x10, 0, 0, 0, 0, 0}, // length just over MaxRecordSize
		frame([]byte{1, 2, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f}), // huge string length
		frame([]byte{0x80, 0x80, 0x80}),                         // unterminated varint
	)
	return seeds
}

// FuzzDecodeEvent feeds DecodeEvent arbitrary records, and arbitrary payloads inside a
// valid frame (so that the checksum does not stop the fuzzer at the door). Whatever it
// accepts must re-encode to exactly the same bytes: one encoding per event.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range decodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, rec := range [][]byte{p, frame(p)} {
			ev, err := journal.DecodeEvent(rec)
			if err != nil {
				if !errors.Is(err, journal.ErrCorrupt) {
					t.Fatalf("DecodeEvent(%x): error %v does not wrap ErrCorrupt", rec, err)
				}
				continue
			}
			if again := journal.EncodeEvent(nil, &ev); !bytes.Equal(again, rec) {
				t.Fatalf("DecodeEvent(%x) = %+v, which encodes to %x", rec, ev, again)
			}
		}
	})
}

// FuzzOpen writes arbitrary bytes after a valid segment header, possibly after valid
// records, and opens it. Open either fails with ErrCorrupt or succeeds; when it
// succeeds, a reader sees the same events, every event replays, and the journal takes
// new events after them.
func FuzzOpen(f *testing.F) {
	var valid []byte
	for i := 1; i <= 3; i++ {
		ev := testEvent(i)
		ev.Seq = uint64(i)
		valid = journal.EncodeEvent(valid, &ev)
	}
	seeds := []struct {
		records int    // how many of the 3 valid records come first
		tail    []byte // then these bytes
	}{
		{3, nil},                        // clean
		{0, valid},                      // the same, via tail
		{2, valid[len(valid)/2:]},       // a torn record
		{3, make([]byte, 100)},          // zeros after the records
		{1, []byte{0xff, 0xff, 0, 0}},   // a huge length
		{0, bytes.Repeat(valid[:9], 5)}, // repeated frame starts
		{3, valid},                      // seqs 1-3 again: a repeat, not a tail
	}
	for _, s := range seeds {
		f.Add(s.records, s.tail)
	}
	recordEnds := journal.RecordEndsForTest(valid)

	f.Fuzz(func(t *testing.T, records int, tail []byte) {
		if records < 0 || records > 3 || len(tail) > 1<<16 {
			t.Skip()
		}
		dir := t.TempDir()
		content := append(journal.SegmentHeaderForTest(1), valid[:recordEnds[records]]...)
		content = append(content, tail...)
		path := filepath.Join(dir, "00000000000000000001.log")
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}

		r := journal.New(dir)
		r.ReadOnly = true
		r.Logger = slog.New(slog.DiscardHandler)
		rerr := r.Open(context.Background())
		var readerSeqs []uint64
		if rerr == nil {
			if err := r.Replay(0, func(ev *revguard.Event) error { readerSeqs = append(readerSeqs, ev.Seq); return nil }); err != nil {
				t.Fatalf("read-only Replay: %v", err)
			}
			r.Close()
		}

		j := journal.New(dir)
		j.NoSync = true
		j.Logger = slog.New(slog.DiscardHandler)
		if err := j.Open(context.Background()); err != nil {
			if !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("Open: %v, want nil or ErrCorrupt", err)
			}
			return
		}
		defer j.Close()
		if rerr != nil {
			t.Fatalf("the writer opened what the reader refused: %v", rerr)
		}
		var seqs []uint64
		if err := j.Replay(0, func(ev *revguard.Event) error { seqs = append(seqs, ev.Seq); return nil }); err != nil {
			t.Fatalf("Replay: %v", err)
		}
		if !slices.Equal(seqs, readerSeqs) || uint64(len(seqs)) != j.LastSeq() || len(seqs) < records {
			t.Fatalf("writer replayed %v (LastSeq %d), reader %v, %d valid records written", seqs, j.LastSeq(), readerSeqs, records)
		}
		ev := testEvent(9)
		seq, err := j.Append(&ev)
		if err != nil || j.Wait(context.Background(), seq) != nil || seq != uint64(len(seqs))+1 {
			t.Fatalf("Append after Open: seq %d, %v", seq, err)
		}
	})
}
