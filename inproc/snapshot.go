package inproc

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// A snapshot is the whole state (SKUs and every reservation) at about one moment, so
// that recovery replays only the journal's events after it and the journal can be
// compacted. It is taken without stopping the engine: S0 is the journal's durable
// seq when it starts; then each SKU is copied as of one moment, under its own lock
// (a SKU with many reservations in parts, see writeSKU), together with the SKU's last
// seq. Recovery loads it and replays the events with seq > S0, skipping,
// for each SKU, those at or below the SKU's copied last seq. The file is renamed into
// place only once every change it contains is durable in the journal, so it never
// holds a change the journal could lose.
//
// File snapshot-<S0, 20 digits>.snap in Inventory.Dir:
//
//	"RGSNAP02" | uvarint S0 | SKU records | 'E' uvarint SKUs uvarint reservations |
//	u32 little-endian CRC-32C (Castagnoli) of everything before it
//
// A SKU record is 'S' str(id) varint(stock, limit, hold seconds, opens_at ns)
// uvarint(last seq) varint(last change ns) varint(held, sold) uvarint(reservations)
// and that many reservations: 16 id bytes, str(customer), uvarint(qty), state byte,
// varint(created, expires, done ns), str(idempotency key), str(order ref). str is a
// uvarint length and the bytes. The two newest snapshots are kept: a damaged newest one
// falls back to the one before, whose events the journal still holds.
//
// Version 1 ("RGSNAP01", written before SKU records kept the time of the last change)
// is still read: the time is then the latest the SKU's reservations record.

const (
	snapMagic   = "RGSNAP02"
	snapMagicV1 = "RGSNAP01"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func snapName(s0 uint64) string { return fmt.Sprintf("snapshot-%020d.snap", s0) }

// listSnapshots returns the S0 of every snapshot file in dir, newest first.
func listSnapshots(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inproc: list snapshots: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		num, ok := strings.CutPrefix(e.Name(), "snapshot-")
		if num, ok = strings.CutSuffix(num, ".snap"); !ok || len(num) != 20 {
			continue
		}
		if s0, err := strconv.ParseUint(num, 10, 64); err == nil {
			seqs = append(seqs, s0)
		}
	}
	slices.Sort(seqs)
	slices.Reverse(seqs)
	return seqs, nil
}

// runSnapshotter is the snapshot goroutine. Open starts it (not when ReadOnly); it
// exits when Close closes inv.stop. Changes kick it every SnapshotEvery seqs.
func (inv *Inventory) runSnapshotter() {
	defer inv.wg.Done()
	for {
		select {
		case <-inv.stop:
			return
		case <-inv.snapKick:
			if err := inv.snapshot(context.Background()); err != nil {
				inv.Logger.Error("inproc: snapshot", "err", err)
			}
		}
	}
}

// snapshot writes a snapshot unless nothing changed since the last one, then deletes
// all but the two newest and compacts the journal up to the older of them.
func (inv *Inventory) snapshot(ctx context.Context) (err error) {
	inv.snapMu.Lock()
	defer inv.snapMu.Unlock()
	last := inv.Journal.LastSeq()
	if inv.Dir == "" || last <= inv.lastSnap {
		return nil
	}
	defer func() {
		if err != nil { // retry after the next SnapshotEvery changes, not at once
			inv.snapNext.Store(last + uint64(inv.SnapshotEvery))
		}
	}()
	// S0 above the previous snapshot's keeps file names distinct.
	if err := inv.wait(ctx, last); err != nil {
		return err
	}
	s0 := inv.Journal.Durable()
	name := filepath.Join(inv.Dir, snapName(s0))
	maxSeq, nRes, err := inv.writeSnapshot(name+".tmp", s0)
	if err != nil {
		os.Remove(name + ".tmp")
		return err
	}
	// Publish only what the journal holds durably.
	if err := inv.wait(ctx, maxSeq); err != nil {
		os.Remove(name + ".tmp")
		return err
	}
	if err := os.Rename(name+".tmp", name); err != nil {
		return fmt.Errorf("inproc: publish snapshot: %w", err)
	}
	if err := syncDir(inv.Dir); err != nil {
		return err
	}
	inv.prevSnap, inv.lastSnap = inv.lastSnap, s0
	inv.snapNext.Store(s0 + snapshotInterval(inv.SnapshotEvery, nRes))

	seqs, err := listSnapshots(inv.Dir)
	if err != nil {
		return err
	}
	for _, seq := range seqs {
		if seq != inv.lastSnap && seq != inv.prevSnap {
			if err := os.Remove(filepath.Join(inv.Dir, snapName(seq))); err != nil {
				return fmt.Errorf("inproc: remove old snapshot: %w", err)
			}
		}
	}
	if inv.prevSnap > 0 {
		if err := inv.Journal.Compact(inv.prevSnap); err != nil {
			return fmt.Errorf("inproc: compact journal to %d: %w", inv.prevSnap, err)
		}
	}
	return nil
}

// snapshotInterval is the number of changes after a snapshot of nRes reservations
// before the next: SnapshotEvery, or nRes when that is more. A snapshot's cost (its
// encoding, each SKU's lock held for each part of it, the file's writeback beside the
// journal's fsyncs) grows with the reservations in memory; spacing snapshots by as many
// changes keeps that cost bounded per change, and recovery still replays no more
// events than the snapshot holds reservations.
func snapshotInterval(every int, nRes uint64) uint64 {
	return max(uint64(every), nRes)
}

// writeSnapshot writes and fsyncs the snapshot file path; it returns the highest
// last seq of the SKUs it copied, and the number of reservations it holds. One
// snapshot at a time: the caller holds inv.snapMu (tests call it alone).
func (inv *Inventory) writeSnapshot(path string, s0 uint64) (uint64, uint64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, 0, fmt.Errorf("inproc: create snapshot: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	var crc uint32
	write := func(p []byte) {
		crc = crc32.Update(crc, castagnoli, p)
		w.Write(p) // the error is sticky: Flush reports it
	}
	buf := binary.AppendUvarint([]byte(snapMagic), s0)
	write(buf)
	maxSeq := s0
	var nSKUs, nRes uint64
	inv.skus.Range(func(_, v any) bool {
		var seq uint64
		var n int
		var ok bool
		if buf, seq, n, ok = inv.writeSKU(v.(*sku), buf, write); ok {
			maxSeq = max(maxSeq, seq)
			nRes += uint64(n)
			nSKUs++
		}
		return true
	})
	buf = append(buf[:0], 'E')
	buf = binary.AppendUvarint(buf, nSKUs)
	buf = binary.AppendUvarint(buf, nRes)
	write(buf)
	w.Write(binary.LittleEndian.AppendUint32(nil, crc))
	if err := w.Flush(); err != nil {
		return 0, 0, fmt.Errorf("inproc: write snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("inproc: sync snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, 0, fmt.Errorf("inproc: close snapshot: %w", err)
	}
	return maxSeq, nRes, nil
}

// snapChunk is the number of reservations a snapshot encodes per hold of a SKU's lock
// (about 0.6 ms at 0.15 µs each): a reserve of the SKU waits a few milliseconds at
// most for a snapshot, however many reservations the SKU has (BenchmarkSnapshotSKULock).
var snapChunk = 4096

// writeSKU writes the record of s with write, using buf as scratch, and returns buf,
// the SKU's last seq and number of reservations in the record; ok is false (nothing
// written) when s does not exist yet. One snapshot at a time (writeSnapshot).
//
// The record is as of one moment, when the SKU's lock is first taken, but a SKU with
// more than snapChunk reservations is not encoded under one hold of the lock: its
// reserves would wait for the whole encoding (0.14 s per million reservations). Under
// the lock, the SKU's fields are encoded, its list of reservations is kept (the slice:
// while book.preImages is set, book.all is only appended to, and eviction builds a new
// array instead of compacting this one), and book.preImages is set, so that each
// reservation keeps, from its first change on, the state it had at that moment. The
// reservations of the list are then encoded snapChunk at a time, each part under the
// lock again, from that kept state where there is one. Reservations made meanwhile are
// past the list's end: they are after the SKU's last seq, replayed from the journal.
func (inv *Inventory) writeSKU(s *sku, buf []byte, write func([]byte)) (_ []byte, seq uint64, n int, ok bool) {
	s.mu.Lock()
	if !s.exists.Load() {
		s.mu.Unlock()
		return buf, 0, 0, false
	}
	seq = s.lastSeq.Load()
	buf, all := appendSKUHead(buf[:0], s)
	if len(all) <= snapChunk {
		buf = appendReservations(buf, all, nil)
		s.mu.Unlock()
		write(buf)
		return buf, seq, len(all), true
	}
	b := s.book
	if b.preImages != nil {
		s.mu.Unlock()
		panic("inproc: two snapshots encode SKU " + s.id + " at once")
	}
	b.preImages = make(map[*reservation]reservation)
	s.mu.Unlock()
	defer func() { // also if write or the test hook panics: changes must stop keeping states
		s.mu.Lock()
		b.preImages = nil
		s.mu.Unlock()
	}()
	write(buf)
	if inv.snapCopied != nil {
		inv.snapCopied(s.id)
	}
	for part := range slices.Chunk(all, snapChunk) {
		s.mu.Lock()
		buf = appendReservations(buf[:0], part, b.preImages)
		s.mu.Unlock()
		write(buf)
	}
	return buf, seq, len(all), true
}

// appendSKUHead encodes the fields of s and the number of its reservations, which
// follow it in the record, and returns them. Under s.mu.
func appendSKUHead(buf []byte, s *sku) ([]byte, []*reservation) {
	var all []*reservation
	if s.book != nil {
		all = s.book.all
	}
	buf = append(buf, 'S')
	buf = appendStr(buf, s.id)
	buf = binary.AppendVarint(buf, s.stock)
	buf = binary.AppendVarint(buf, int64(s.limit))
	buf = binary.AppendVarint(buf, int64(s.holdSecs))
	buf = binary.AppendVarint(buf, s.opensAt.Load())
	buf = binary.AppendUvarint(buf, s.lastSeq.Load())
	buf = binary.AppendVarint(buf, s.lastAt)
	buf = binary.AppendVarint(buf, s.held)
	buf = binary.AppendVarint(buf, s.sold)
	return binary.AppendUvarint(buf, uint64(len(all))), all
}

// appendReservations encodes rs, each as preImages holds it when it is there. Under
// the SKU's lock.
func appendReservations(buf []byte, rs []*reservation, preImages map[*reservation]reservation) []byte {
	for _, r := range rs {
		if old, ok := preImages[r]; ok {
			buf = appendReservation(buf, &old)
		} else {
			buf = appendReservation(buf, r)
		}
	}
	return buf
}

func appendReservation(buf []byte, r *reservation) []byte {
	buf = append(buf, r.id[:]...)
	buf = appendStr(buf, r.customer)
	buf = binary.AppendUvarint(buf, uint64(r.qty))
	buf = append(buf, byte(r.state))
	buf = binary.AppendVarint(buf, r.createdAt)
	buf = binary.AppendVarint(buf, r.expiresAt)
	buf = binary.AppendVarint(buf, r.doneAt)
	buf = appendStr(buf, r.idemKey())
	return appendStr(buf, r.orderRef())
}

func appendStr(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// syncDir fsyncs dir, so that a rename or removal in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("inproc: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("inproc: sync dir: %w", err)
	}
	return nil
}
