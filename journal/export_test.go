package journal

import "encoding/binary"

// SegmentHeaderForTest returns the header of a segment whose first seq is first.
func SegmentHeaderForTest(first uint64) []byte { return appendHeader(nil, first) }

// RecordEndsForTest returns the offsets in p where each of its records ends, after a 0
// for "no record".
func RecordEndsForTest(p []byte) []int {
	ends := []int{0}
	for off := 0; off+recordHeaderSize <= len(p); {
		off += recordHeaderSize + int(binary.LittleEndian.Uint32(p[off:]))
		ends = append(ends, off)
	}
	return ends
}

// AllZeroForTest reports whether b holds only zero bytes, as Open tells preallocated
// space from a torn tail.
func AllZeroForTest(b []byte) bool { return allZero(b) }
