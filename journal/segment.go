package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Segment header: magic, version, first seq, CRC-32C of the 20 bytes before it.
const (
	segmentMagic   = "RGJOURNL"
	segmentVersion = 1
	headerSize     = 24
	segmentSuffix  = ".log"
	// indexEvery is the distance in bytes between two entries of a segment's sparse
	// index, which lets a reader start near any seq instead of at the segment start.
	indexEvery = 64 << 10
)

// segment is one segment file. Its fields are guarded by Journal.segMu once the segment
// is in Journal.segs.
type segment struct {
	path  string
	first uint64       // seq of its first record (from the header)
	last  uint64       // seq of its last valid (durable) record; first-1 when empty
	size  int64        // bytes of header and valid (durable) records
	index []indexEntry // sparse: seq → offset of that record; index[0] is the first
	// complete is set (ReadOnly) once a segment is known not to grow any more and was
	// verified to its end.
	complete bool
}

type indexEntry struct {
	seq uint64
	off int64
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%020d%s", first, segmentSuffix)
}

// parseSegmentName returns the first seq encoded in a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// listSegments returns the first seqs of the segment files in dir, in order. Other
// files are ignored. A missing dir has no segments.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: list %s: %w", dir, err)
	}
	var firsts []uint64
	for _, e := range entries {
		if first, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)
	return firsts, nil
}

func appendHeader(dst []byte, first uint64) []byte {
	start := len(dst)
	dst = append(dst, segmentMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, segmentVersion)
	dst = binary.LittleEndian.AppendUint64(dst, first)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// checkHeader validates a segment header against the first seq of the file name.
func checkHeader(h []byte, first uint64) error {
	if len(h) < headerSize {
		return fmt.Errorf("short header: %d of %d bytes", len(h), headerSize)
	}
	if string(h[:8]) != segmentMagic {
		return fmt.Errorf("not a journal segment (bad magic %q)", h[:8])
	}
	if crc32.Checksum(h[:20], castagnoli) != binary.LittleEndian.Uint32(h[20:]) {
		return errors.New("header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != segmentVersion {
		return fmt.Errorf("unsupported segment version %d", v)
	}
	if got := binary.LittleEndian.Uint64(h[12:]); got != first {
		return fmt.Errorf("header first seq %d does not match the file name", got)
	}
	return nil
}

// tornHeader reports whether h, the whole content of a last segment whose header is
// invalid, can be a header whose creation a crash interrupted: a prefix of the
// expected header, possibly with zeros where the write did not land.
func tornHeader(h []byte, first uint64) bool {
	if len(h) > headerSize {
		return false
	}
	want := appendHeader(nil, first)
	for i, c := range h {
		if c != want[i] && c != 0 {
			return false
		}
	}
	return true
}

// createSegment creates the segment file for first, writes and syncs its header, and
// syncs the directory so that the file survives a crash. It returns the file open for
// writing.
func createSegment(dir string, first uint64, noSync bool) (*os.File, *segment, error) {
	path := filepath.Join(dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: create segment %d: %w", first, err)
	}
	if _, err := f.Write(appendHeader(nil, first)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal: write header of %s: %w", path, err)
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("journal: sync %s: %w", path, err)
		}
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	seg := &segment{path: path, first: first, last: first - 1, size: headerSize,
		index: []indexEntry{{seq: first, off: headerSize}}}
	return f, seg, nil
}

// syncDir makes the creation or removal of files in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: open dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: sync dir %s: %w", dir, err)
	}
	return nil
}

// addIndex records a record boundary in the sparse index when the last entry is far
// enough behind. The caller holds segMu (or owns seg exclusively).
func (s *segment) addIndex(seq uint64, off int64) {
	if off-s.index[len(s.index)-1].off >= indexEvery {
		s.index = append(s.index, indexEntry{seq: seq, off: off})
	}
}

// seek returns the index entry to start reading from to reach seq.
func (s *segment) seek(seq uint64) indexEntry {
	i, found := slices.BinarySearchFunc(s.index, seq, func(e indexEntry, seq uint64) int {
		switch {
		case e.seq < seq:
			return -1
		case e.seq > seq:
			return 1
		}
		return 0
	})
	if !found && i > 0 {
		i--
	}
	return s.index[i]
}

// badRecord says where and why a scan stopped before the end of a segment.
type badRecord struct {
	off    int64
	reason string
	// valid is set when the record's frame and checksum were intact but its content
	// was not (wrong seq, undecodable): never a torn write.
	valid bool
}

// recordReader reads framed records from a segment file with few, large reads.
type recordReader struct {
	f    *os.File
	buf  []byte
	r, w int   // buf[r:w] is read but not consumed
	base int64 // file offset of buf[0]
	end  int64 // read nothing at or past this offset; -1 for the end of the file
	eof  bool
}

func newRecordReader(f *os.File, off, end int64, bufSize int) *recordReader {
	bufSize = max(bufSize, 4096)
	return &recordReader{f: f, buf: make([]byte, bufSize), base: off, end: end}
}

// offset is the file offset of the next record.
func (rr *recordReader) offset() int64 { return rr.base + int64(rr.r) }

// fill tries to have need bytes unconsumed, reading more of the file.
func (rr *recordReader) fill(need int) error {
	if rr.w-rr.r >= need || rr.eof {
		return nil
	}
	if rr.r > 0 {
		copy(rr.buf, rr.buf[rr.r:rr.w])
		rr.w -= rr.r
		rr.base += int64(rr.r)
		rr.r = 0
	}
	if need > len(rr.buf) {
		rr.buf = append(rr.buf[:rr.w], make([]byte, need-rr.w)...)
		rr.buf = rr.buf[:cap(rr.buf)]
	}
	for rr.w < need && !rr.eof {
		chunk := rr.buf[rr.w:]
		if rr.end >= 0 {
			left := rr.end - rr.base - int64(rr.w)
			if left <= 0 {
				rr.eof = true
				break
			}
			if left < int64(len(chunk)) {
				chunk = chunk[:left]
			}
		}
		n, err := rr.f.ReadAt(chunk, rr.base+int64(rr.w))
		rr.w += n
		if err == io.EOF {
			rr.eof = true
		} else if err != nil {
			return fmt.Errorf("journal: read %s at %d: %w", rr.f.Name(), rr.base+int64(rr.w), err)
		}
	}
	return nil
}

// next returns the payload of the next record, whose frame and checksum are verified.
// It returns io.EOF at a clean end, a *badRecord for an incomplete or damaged record
// (the reader then stays on it), and other errors for I/O failures.
func (rr *recordReader) next() ([]byte, error) {
	if err := rr.fill(recordHeaderSize); err != nil {
		return nil, err
	}
	avail := rr.w - rr.r
	if avail == 0 {
		return nil, io.EOF
	}
	off := rr.offset()
	if avail < recordHeaderSize {
		return nil, &badRecord{off: off, reason: fmt.Sprintf("incomplete record header (%d bytes)", avail)}
	}
	n := binary.LittleEndian.Uint32(rr.buf[rr.r:])
	if n == 0 || n > MaxRecordSize {
		return nil, &badRecord{off: off, reason: fmt.Sprintf("record length %d out of range", n)}
	}
	size := recordHeaderSize + int(n)
	if err := rr.fill(size); err != nil {
		return nil, err
	}
	if rr.w-rr.r < size {
		return nil, &badRecord{off: off, reason: fmt.Sprintf("incomplete record (%d of %d bytes)", rr.w-rr.r, size)}
	}
	rec := rr.buf[rr.r : rr.r+size]
	payload := rec[recordHeaderSize:]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rec[4:]) {
		return nil, &badRecord{off: off, reason: "record checksum mismatch"}
	}
	rr.r += size
	return payload, nil
}

func (b *badRecord) Error() string { return fmt.Sprintf("at offset %d: %s", b.off, b.reason) }

// validAfter reports whether data (the bytes of a segment after a bad record, starting
// at file offset base) holds an intact record with a seq above lastSeq: then the bad
// record is not a torn tail but damage in the middle of acknowledged data. It returns
// the offset of the record found.
func validAfter(data []byte, base int64, lastSeq uint64) (int64, bool) {
	for i := 0; i+recordHeaderSize < len(data); i++ {
		n := binary.LittleEndian.Uint32(data[i:])
		if n == 0 || n > MaxRecordSize || uint64(n) > uint64(len(data)-i-recordHeaderSize) {
			continue
		}
		payload := data[i+recordHeaderSize : i+recordHeaderSize+int(n)]
		if seq, ok := payloadSeq(payload); !ok || seq <= lastSeq {
			continue
		}
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(data[i+4:]) {
			continue
		}
		return base + int64(i), true
	}
	return 0, false
}
