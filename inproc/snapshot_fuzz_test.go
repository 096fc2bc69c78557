package inproc

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/revenueguard/revguard/revguardtest"
)

// withCRC returns body followed by its CRC-32C, as a snapshot file ends.
func withCRC(body []byte) []byte {
	return binary.LittleEndian.AppendUint32(append([]byte(nil), body...), crc32.Checksum(body, castagnoli))
}

// realSnapshot returns the bytes of a snapshot written by an engine after a workload.
func realSnapshot(tt testing.TB) []byte {
	dir, clock := tt.TempDir(), revguardtest.NewClock(time.Time{})
	inv := mustEngine(tt, dir, clock, nil)
	workload(tt, inv, clock, "seed", 10)
	path := filepath.Join(dir, "seed.snap")
	if _, _, err := inv.writeSnapshot(path, inv.Journal.Durable()); err != nil {
		tt.Fatal(err)
	}
	crash(inv)
	data, err := os.ReadFile(path)
	if err != nil {
		tt.Fatal(err)
	}
	return data
}

// FuzzDecodeSnapshot feeds the snapshot decoder bodies with a correct checksum (so
// that the fuzzer explores the decoder, not the CRC). It must never panic; what it
// accepts must satisfy the invariants, install cleanly or be refused, and encode back
// to a file that decodes to the same state. Besides the seeds below, the corpus in
// testdata/fuzz/FuzzDecodeSnapshot holds a real snapshot (without its checksum) and
// its first half.
func FuzzDecodeSnapshot(f *testing.F) {
	seeds := [][]byte{
		[]byte(snapMagic),                       // no S0
		append([]byte(snapMagic), 0, 'E', 0, 0), // empty state
		append([]byte(snapMagic), 5, 'E', 1, 0), // a SKU announced but missing
		append([]byte(snapMagic), 0, 'S', 1, 'x', 2, 2, 2, 0, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f), // huge reservation count
		append([]byte(snapMagic), 0, 'S', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),   // huge string
		append([]byte(snapMagic), 0, 'S', 1, 'x', 2, 2, 2, 0, 2, 4, 0, 0, 0, 'E', 1, 0),                 // one idle SKU
		append([]byte(snapMagicV1), 0, 'S', 1, 'x', 2, 2, 2, 0, 2, 0, 0, 0, 'E', 1, 0),                  // one idle SKU, version 1
		append([]byte(snapMagic), 0, 'Z'), // unknown tag
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := decodeSnapshot(withCRC(body))
		if err != nil {
			return
		}
		var again []byte
		again = binary.AppendUvarint([]byte(snapMagic), st.s0)
		for _, s := range st.skus {
			if s.available() < 0 || s.held < 0 || s.sold < 0 {
				t.Fatalf("accepted SKU %q with stock %d, held %d, sold %d", s.id, s.stock, s.held, s.sold)
			}
			again = appendSKURecord(again, s)
		}
		again = append(again, 'E')
		again = binary.AppendUvarint(again, uint64(len(st.skus)))
		again = binary.AppendUvarint(again, uint64(st.nRes))
		st2, err := decodeSnapshot(withCRC(again))
		if err != nil {
			t.Fatalf("re-encoded snapshot refused: %v", err)
		}
		if len(st2.skus) != len(st.skus) || st2.nRes != st.nRes || st2.s0 != st.s0 {
			t.Fatalf("re-encoded snapshot differs: %d SKUs %d reservations, want %d, %d", len(st2.skus), st2.nRes, len(st.skus), st.nRes)
		}
		inv := &Inventory{}
		inv.res.init()
		if err := inv.installSnapshot(st); err != nil {
			return // duplicate ids are refused at install
		}
		if got := inv.Stats().SKUs; got != len(st.skus) {
			t.Fatalf("installed %d SKUs, want %d", got, len(st.skus))
		}
	})
}

func TestDecodeSnapshotRefusesDamage(t *testing.T) {
	real := realSnapshot(t)
	if _, err := decodeSnapshot(real); err != nil {
		t.Fatalf("a real snapshot is refused: %v", err)
	}
	// Every truncation and every single flipped byte is refused.
	for n := range len(real) {
		if _, err := decodeSnapshot(real[:n]); err == nil {
			t.Fatalf("snapshot cut at %d of %d bytes accepted", n, len(real))
		}
	}
	for i := range real {
		bad := append([]byte(nil), real...)
		bad[i] ^= 0x01
		if _, err := decodeSnapshot(bad); err == nil {
			t.Fatalf("snapshot with byte %d flipped accepted", i)
		}
	}
}
