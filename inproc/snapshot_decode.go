package inproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/revenueguard/revguard"
)

// errBadSnapshot is wrapped by every error about a damaged or inconsistent snapshot.
var errBadSnapshot = errors.New("inproc: bad snapshot")

// snapState is a decoded snapshot: SKUs built with their reservations, not yet
// installed in an Inventory.
type snapState struct {
	s0   uint64
	skus []*sku
	nRes int
}

// snapReader decodes the fields of a snapshot; the first error sticks.
type snapReader struct {
	p   []byte
	off int
	err error
	v1  bool // version 1: no time of the last change in SKU records
}

func (d *snapReader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: offset %d: %s", errBadSnapshot, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *snapReader) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p[d.off:])
	if n <= 0 {
		d.fail("bad %s", what)
		return 0
	}
	d.off += n
	return v
}

func (d *snapReader) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.p[d.off:])
	if n <= 0 {
		d.fail("bad %s", what)
		return 0
	}
	d.off += n
	return v
}

func (d *snapReader) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.p) {
		d.fail("missing %s", what)
		return 0
	}
	b := d.p[d.off]
	d.off++
	return b
}

func (d *snapReader) bytes(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.p)-d.off {
		d.fail("truncated %s", what)
		return nil
	}
	b := d.p[d.off : d.off+n]
	d.off += n
	return b
}

// str reads a string of at most maxLen bytes.
func (d *snapReader) str(maxLen int, what string) string {
	n := d.uvarint(what)
	if n > uint64(maxLen) {
		d.fail("%s of %d bytes", what, n)
		return ""
	}
	return string(d.bytes(int(n), what))
}

// rangeInt reads a varint in [lo, hi].
func (d *snapReader) rangeInt(lo, hi int64, what string) int64 {
	v := d.varint(what)
	if d.err == nil && (v < lo || v > hi) {
		d.fail("%s %d out of range", what, v)
	}
	return v
}

// decodeSnapshot checks and decodes a whole snapshot file. It never panics and
// allocates in proportion to len(p); it checks the checksum and that every SKU's
// counts match its reservations. Duplicate ids are found when it is installed.
func decodeSnapshot(p []byte) (*snapState, error) {
	if len(p) < len(snapMagic)+4 || (string(p[:len(snapMagic)]) != snapMagic && string(p[:len(snapMagic)]) != snapMagicV1) {
		return nil, fmt.Errorf("%w: not a snapshot file", errBadSnapshot)
	}
	body := p[:len(p)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(p[len(p)-4:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", errBadSnapshot, got, want)
	}
	d := &snapReader{p: body, off: len(snapMagic), v1: string(p[:len(snapMagicV1)]) == snapMagicV1}
	st := &snapState{s0: d.uvarint("S0")}
	for d.err == nil {
		switch tag := d.byte("record tag"); tag {
		case 'S':
			s := decodeSKU(d)
			if d.err == nil {
				st.skus = append(st.skus, s)
				if s.book != nil {
					st.nRes += len(s.book.all)
				}
			}
		case 'E':
			nSKUs, nRes := d.uvarint("SKU count"), d.uvarint("reservation count")
			switch {
			case d.err != nil:
			case nSKUs != uint64(len(st.skus)) || nRes != uint64(st.nRes):
				d.fail("counts %d SKUs, %d reservations; found %d, %d", nSKUs, nRes, len(st.skus), st.nRes)
			case d.off != len(body):
				d.fail("data after the end record")
			default:
				return st, nil
			}
		default:
			d.fail("unknown record tag %q", tag)
		}
	}
	return nil, d.err
}

// minResRecord is the smallest encoding of a reservation, which bounds how many a
// SKU record can announce.
const minResRecord = 16 + 1 + 1 + 1 + 3 + 1 + 1 + 1

func decodeSKU(d *snapReader) *sku {
	id := d.str(revguard.MaxSKUIDLen, "SKU id")
	if d.err == nil && !revguard.ValidSKUID(id) {
		d.fail("invalid SKU id %q", id)
	}
	s := newSKU(id)
	s.stock = d.rangeInt(0, revguard.MaxStock, "stock")
	s.limit = int32(d.rangeInt(1, revguard.MaxPerCustomerLimit, "per-customer limit"))
	s.holdSecs = int32(d.rangeInt(1, revguard.MaxHoldSeconds, "hold seconds"))
	s.opensAt.Store(d.rangeInt(0, math.MaxInt64, "opens_at"))
	s.lastSeq.Store(d.uvarint("last seq"))
	if !d.v1 {
		s.lastAt = d.rangeInt(0, math.MaxInt64, "last change time")
	}
	held := d.rangeInt(0, revguard.MaxStock, "held")
	sold := d.rangeInt(0, revguard.MaxStock, "sold")
	n := d.uvarint("reservation count")
	if d.err == nil && n > uint64(len(d.p)-d.off)/minResRecord {
		d.fail("%d reservations announced, more than the file holds", n)
	}
	if d.err != nil {
		return nil
	}
	s.exists.Store(true)
	for range n {
		r := decodeReservation(d, s)
		if d.err != nil {
			return nil
		}
		s.lastAt = max(s.lastAt, r.createdAt, r.doneAt)
		if r.state == stExpired {
			s.lastAt = max(s.lastAt, r.expiresAt) // expired at or after its deadline
		}
		b := s.bookOrNew()
		b.all = append(b.all, r)
		switch r.state {
		case stHeld:
			b.holds.push(holdEntry{at: r.expiresAt, r: r})
			s.held += int64(r.qty)
			s.addOwned(r.customer, int64(r.qty))
		case stConfirmed:
			s.sold += int64(r.qty)
			s.addOwned(r.customer, int64(r.qty))
		}
	}
	switch {
	case s.held != held || s.sold != sold:
		d.fail("SKU %q: held %d, sold %d, but its reservations hold %d and sold %d", id, held, sold, s.held, s.sold)
	case s.held+s.sold > s.stock:
		d.fail("SKU %q: held %d + sold %d exceed stock %d", id, s.held, s.sold, s.stock)
	case s.lastSeq.Load() == 0:
		d.fail("SKU %q: last seq 0", id)
	}
	if d.err != nil {
		return nil
	}
	s.avail.Store(s.available())
	return s
}

func decodeReservation(d *snapReader, s *sku) *reservation {
	r := &reservation{sku: s}
	copy(r.id[:], d.bytes(16, "reservation id"))
	r.customer = d.str(4*revguard.MaxCustomerIDLen, "customer id")
	qty := d.uvarint("quantity")
	r.state = resState(d.byte("state"))
	r.createdAt = d.varint("created_at")
	r.expiresAt = d.varint("expires_at")
	r.doneAt = d.varint("done_at")
	key := d.str(revguard.MaxIdempotencyKeyLen, "idempotency key")
	ref := d.str(4*revguard.MaxOrderRefLen, "order ref")
	switch {
	case d.err != nil:
		return nil
	case r.customer == "":
		d.fail("reservation %s: empty customer id", r.id)
	case qty < 1 || qty > revguard.MaxPerCustomerLimit:
		d.fail("reservation %s: quantity %d", r.id, qty)
	case r.state < stHeld || r.state > stExpired:
		d.fail("reservation %s: state %d", r.id, r.state)
	case r.createdAt <= 0 || r.expiresAt < r.createdAt:
		d.fail("reservation %s: created %d, expires %d", r.id, r.createdAt, r.expiresAt)
	case (r.doneAt != 0) != (r.state == stConfirmed || r.state == stReleased):
		d.fail("reservation %s: done_at %d in state %s", r.id, r.doneAt, r.state.status())
	case ref != "" && r.state != stConfirmed:
		d.fail("reservation %s: order ref in state %s", r.id, r.state.status())
	}
	if d.err != nil {
		return nil
	}
	r.qty = int32(qty)
	if key != "" || ref != "" {
		r.extra = &resExtra{idemKey: key, orderRef: ref}
	}
	return r
}
