package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/revenueguard/revguard"
)

// load verifies every segment for a writer, cuts a torn tail off the last one, and
// leaves j.segs and j.file (the last segment, open for writing) and j.zeroed set.
func (j *Journal) load(ctx context.Context) error {
	firsts, err := listSegments(j.Dir)
	if err != nil {
		return err
	}
	if len(firsts) == 0 {
		f, seg, err := createSegment(j.Dir, 1, j.NoSync)
		if err != nil {
			return err
		}
		j.file, j.segs, j.zeroed = osSegment{f}, []*segment{seg}, seg.size
		return nil
	}
	segs := make([]*segment, 0, len(firsts))
	var prev *segment
	for i, first := range firsts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("journal: open: %w", err)
		}
		isLast := i == len(firsts)-1
		seg := &segment{path: filepath.Join(j.Dir, segmentName(first)), first: first}
		f, err := j.verifySegment(seg, prev, isLast)
		if err != nil {
			return err
		}
		if isLast {
			j.file = osSegment{f}
		} else {
			f.Close()
		}
		segs = append(segs, seg)
		prev = seg
	}
	j.segs = segs
	return nil
}

// verifySegment checks the header of seg (when seg.size is 0) and the records from
// seg.size on, extending seg. A bad record in a segment that is not the last is
// corruption. In the last segment, a writer cuts a torn tail off (and fails if intact
// records follow the bad one) or keeps its preallocated zeros, and a reader stops there.
// The file is returned open (for writing when it is a writer's last segment); it is nil
// when a reader skips the last segment because its header is not complete yet.
func (j *Journal) verifySegment(seg *segment, prev *segment, isLast bool) (*os.File, error) {
	writer := isLast && !j.ReadOnly
	flag := os.O_RDONLY
	if writer {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(seg.path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("journal: open segment %d: %w", seg.first, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("journal: stat %s: %w", seg.path, err)
	}
	size := info.Size()

	if seg.size == 0 {
		h := make([]byte, headerSize)
		n, err := f.ReadAt(h, 0)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("journal: read header of %s: %w", seg.path, err)
		}
		if herr := checkHeader(h[:n], seg.first); herr != nil {
			if !isLast || size > headerSize || !tornHeader(h[:n], seg.first) {
				return nil, corruptf("%s: %v", seg.path, herr)
			}
			if j.ReadOnly {
				return nil, nil
			}
			// A crash interrupted the creation of this segment, before any record.
			if err := j.rewriteHeader(f, seg.first); err != nil {
				return nil, err
			}
			j.Logger.Warn("journal: rewrote the torn header of the last segment", "file", seg.path)
			size = headerSize
		}
		if prev != nil && seg.first != prev.last+1 {
			return nil, corruptf("%s: first seq %d does not follow %s, whose last seq is %d",
				seg.path, seg.first, filepath.Base(prev.path), prev.last)
		}
		seg.last = seg.first - 1
		seg.size = headerSize
		seg.index = []indexEntry{{seq: seg.first, off: headerSize}}
	}

	bad, err := scanSegment(f, seg)
	if err != nil {
		return nil, err
	}
	if bad != nil {
		if !isLast || bad.valid {
			return nil, corruptf("%s: %v", seg.path, bad)
		}
		if writer {
			kept, err := j.cutTail(f, seg, bad, size)
			if err != nil {
				return nil, err
			}
			if !kept {
				size = seg.size
			}
		}
	}
	if writer {
		j.zeroed = size
	}
	ok = true
	return f, nil
}

// scanSegment verifies the records of seg from seg.size to the end of the file,
// extending seg.last, seg.size and seg.index, and returns the first bad record, or nil
// when the file ends cleanly.
func scanSegment(f *os.File, seg *segment) (*badRecord, error) {
	rr := newRecordReader(f, seg.size, -1, 1<<20)
	var ev revguard.Event
	for {
		off := rr.offset()
		p, err := rr.next()
		if err == io.EOF {
			return nil, nil
		}
		if bad, ok := errors.AsType[*badRecord](err); ok {
			return bad, nil
		}
		if err != nil {
			return nil, err
		}
		if err := decodePayload(p, &ev, false); err != nil {
			return &badRecord{off: off, reason: err.Error(), valid: true}, nil
		}
		if ev.Seq != seg.last+1 {
			return &badRecord{off: off, reason: fmt.Sprintf("seq %d where %d was expected", ev.Seq, seg.last+1), valid: true}, nil
		}
		seg.addIndex(ev.Seq, off)
		seg.last = ev.Seq
		seg.size = rr.offset()
	}
}

// cutTail truncates a torn tail at bad, unless an intact record follows it: then the bad
// record is damage inside acknowledged data, and cutting would lose it. A tail of zeros
// alone is the flusher's preallocated space (see Preallocation), kept as it is.
// It reports whether it kept the tail.
func (j *Journal) cutTail(f *os.File, seg *segment, bad *badRecord, size int64) (bool, error) {
	tail := make([]byte, size-bad.off)
	if _, err := f.ReadAt(tail, bad.off); err != nil && err != io.EOF {
		return false, fmt.Errorf("journal: read %s: %w", seg.path, err)
	}
	if allZero(tail) {
		return true, nil
	}
	rest := tail[1:]
	if at, found := validAfter(rest, bad.off+1, seg.last); found {
		return false, corruptf("%s: %v, but an intact later record follows at offset %d", seg.path, bad, at)
	}
	if err := f.Truncate(bad.off); err != nil {
		return false, fmt.Errorf("journal: truncate %s: %w", seg.path, err)
	}
	if !j.NoSync {
		if err := f.Sync(); err != nil {
			return false, fmt.Errorf("journal: sync %s: %w", seg.path, err)
		}
	}
	j.Logger.Warn("journal: cut a torn tail off the last segment (never acknowledged)",
		"file", seg.path, "offset", bad.off, "bytes", size-bad.off, "reason", bad.reason,
		"last_seq", seg.last)
	return false, nil
}

func (j *Journal) rewriteHeader(f *os.File, first uint64) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", f.Name(), err)
	}
	if _, err := f.WriteAt(appendHeader(nil, first), 0); err != nil {
		return fmt.Errorf("journal: write header of %s: %w", f.Name(), err)
	}
	if !j.NoSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("journal: sync %s: %w", f.Name(), err)
		}
	}
	return nil
}

// refresh brings a read-only journal's view up to date with the files: it drops the
// segments a writer compacted, verifies new segments, and continues the scan of the
// ones that were still growing. The caller must not hold segMu.
func (j *Journal) refresh(ctx context.Context) error {
	j.roMu.Lock()
	defer j.roMu.Unlock()
	firsts, err := listSegments(j.Dir)
	if err != nil {
		return err
	}
	j.segMu.RLock()
	known := make(map[uint64]*segment, len(j.segs))
	for _, s := range j.segs {
		known[s.first] = s
	}
	j.segMu.RUnlock()

	segs := make([]*segment, 0, len(firsts))
	var prev *segment
	for i, first := range firsts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("journal: refresh: %w", err)
		}
		isLast := i == len(firsts)-1
		old, ok := known[first]
		if ok && old.complete {
			segs = append(segs, old)
			prev = old
			continue
		}
		var seg *segment
		if ok {
			// Continue where the last scan stopped, on a copy: readers use the old one.
			cp := *old
			cp.index = slices.Clip(old.index)
			seg = &cp
		} else {
			seg = &segment{path: filepath.Join(j.Dir, segmentName(first)), first: first}
		}
		f, err := j.verifySegment(seg, prev, isLast)
		if errors.Is(err, os.ErrNotExist) {
			// Compacted by the writer after we listed it.
			continue
		}
		if err != nil {
			return err
		}
		if f == nil {
			break // the last segment's header is not written yet
		}
		f.Close()
		seg.complete = !isLast
		segs = append(segs, seg)
		prev = seg
	}

	j.segMu.Lock()
	j.segs = segs
	if len(segs) > 0 {
		j.durable.Store(segs[len(segs)-1].last)
	}
	j.segMu.Unlock()
	return nil
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
