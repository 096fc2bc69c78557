package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/revenueguard/revguard"
)

// MaxRecordSize bounds the payload of one record. A length field above it is corruption,
// so that a damaged header can never make a reader allocate or skip gigabytes.
const MaxRecordSize = 1 << 20

// recordHeaderSize is the frame in front of every payload: u32 length, u32 CRC-32C.
const recordHeaderSize = 8

// castagnoli is the CRC-32C table (hardware accelerated on amd64 and arm64). It is
// written once at package initialisation and only read afterwards.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Presence bits of the payload's field mask. A field is stored only when its bit is set,
// and its bit is set only when the field is not zero, so that every event has exactly
// one encoding. The most frequent fields of a reservation event come first, so that its
// mask fits in one varint byte. Values are stored on disk: never renumber them.
const (
	fTime = 1 << iota
	fSKU
	fReservationID
	fCustomerID
	fQuantity
	fExpiresAt
	fIdempotencyKey
	fOrderRef
	fRevived
	fStock
	fPerCustomerLimit
	fHoldSeconds
	fOpensAt
	fULID // ReservationID is a canonical ULID, stored as its 16 bytes

	fAll = fULID<<1 - 1
)

// maxUnixSec is the largest Unix second that time.Unix can turn back into the same
// second: time.Time counts seconds from year 1 in an int64.
const maxUnixSec = math.MaxInt64 - 62135596800

// EncodeEvent appends the framed record of ev to dst and returns the extended slice:
//
//	[u32 LE payload length][u32 LE CRC-32C of payload][payload]
//
// The payload layout is described in the package documentation. EncodeEvent does not
// allocate when dst has room. The caller checks that the payload is at most
// MaxRecordSize (Append does).
func EncodeEvent(dst []byte, ev *revguard.Event) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, ev.Seq)
	dst = appendBody(dst, ev)
	sealRecord(dst[start:])
	return dst
}

// appendRecord appends the record whose payload is seq followed by body, an encoding
// by appendBody. Append encodes the body before taking its lock and this under it.
func appendRecord(dst []byte, seq uint64, body []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, seq)
	dst = append(dst, body...)
	sealRecord(dst[start:])
	return dst
}

// sealRecord fills in the frame of a record whose payload is in place.
func sealRecord(rec []byte) {
	p := rec[recordHeaderSize:]
	binary.LittleEndian.PutUint32(rec, uint32(len(p)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(p, castagnoli))
}

// appendBody appends the payload of ev without its leading seq.
func appendBody(dst []byte, ev *revguard.Event) []byte {
	var mask uint64
	var id [16]byte
	hasTime := !ev.Time.IsZero()
	if hasTime {
		mask |= fTime
	}
	if ev.SKU != "" {
		mask |= fSKU
	}
	if ev.ReservationID != "" {
		mask |= fReservationID
		if parseULID(ev.ReservationID, &id) {
			mask |= fULID
		}
	}
	if ev.CustomerID != "" {
		mask |= fCustomerID
	}
	if ev.Quantity != 0 {
		mask |= fQuantity
	}
	if !ev.ExpiresAt.IsZero() {
		mask |= fExpiresAt
	}
	if ev.IdempotencyKey != "" {
		mask |= fIdempotencyKey
	}
	if ev.OrderRef != "" {
		mask |= fOrderRef
	}
	if ev.Revived {
		mask |= fRevived
	}
	if ev.Stock != 0 {
		mask |= fStock
	}
	if ev.PerCustomerLimit != 0 {
		mask |= fPerCustomerLimit
	}
	if ev.HoldSeconds != 0 {
		mask |= fHoldSeconds
	}
	if !ev.OpensAt.IsZero() {
		mask |= fOpensAt
	}

	dst = append(dst, byte(ev.Type))
	dst = binary.AppendUvarint(dst, mask)

	// Time is absolute; the other times are stored as a difference from it (or from
	// the Unix epoch when Time is zero), which is a few bytes for a hold deadline.
	var baseSec int64
	var baseNsec int64
	if hasTime {
		baseSec, baseNsec = ev.Time.Unix(), int64(ev.Time.Nanosecond())
		dst = binary.AppendVarint(dst, baseSec)
		dst = binary.AppendUvarint(dst, uint64(baseNsec))
	}
	if mask&fSKU != 0 {
		dst = appendString(dst, ev.SKU)
	}
	if mask&fULID != 0 {
		dst = append(dst, id[:]...)
	} else if mask&fReservationID != 0 {
		dst = appendString(dst, ev.ReservationID)
	}
	if mask&fCustomerID != 0 {
		dst = appendString(dst, ev.CustomerID)
	}
	if mask&fQuantity != 0 {
		dst = binary.AppendVarint(dst, ev.Quantity)
	}
	if mask&fExpiresAt != 0 {
		dst = appendTimeDelta(dst, ev.ExpiresAt, baseSec, baseNsec)
	}
	if mask&fIdempotencyKey != 0 {
		dst = appendString(dst, ev.IdempotencyKey)
	}
	if mask&fOrderRef != 0 {
		dst = appendString(dst, ev.OrderRef)
	}
	if mask&fStock != 0 {
		dst = binary.AppendVarint(dst, ev.Stock)
	}
	if mask&fPerCustomerLimit != 0 {
		dst = binary.AppendVarint(dst, ev.PerCustomerLimit)
	}
	if mask&fHoldSeconds != 0 {
		dst = binary.AppendVarint(dst, ev.HoldSeconds)
	}
	if mask&fOpensAt != 0 {
		dst = appendTimeDelta(dst, ev.OpensAt, baseSec, baseNsec)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendTimeDelta stores t as (seconds, nanoseconds) minus the base. The seconds wrap
// around in two's complement, so that any two representable times round-trip exactly.
func appendTimeDelta(dst []byte, t time.Time, baseSec, baseNsec int64) []byte {
	dst = binary.AppendVarint(dst, int64(uint64(t.Unix())-uint64(baseSec)))
	return binary.AppendVarint(dst, int64(t.Nanosecond())-baseNsec)
}

// DecodeEvent decodes exactly one framed record, as written by EncodeEvent, and fails
// with an error wrapping ErrCorrupt on anything else: a short or oversized frame, a
// checksum mismatch, an unknown type or field, a non-canonical encoding or trailing
// bytes. It never panics, allocates at most the strings of the event, and runs in time
// linear in len(p).
func DecodeEvent(p []byte) (revguard.Event, error) {
	var ev revguard.Event
	payload, err := checkFrame(p)
	if err != nil {
		return ev, err
	}
	if len(payload)+recordHeaderSize != len(p) {
		return ev, fmt.Errorf("%w: %d trailing bytes after record", ErrCorrupt, len(p)-len(payload)-recordHeaderSize)
	}
	if err := decodePayload(payload, &ev, true); err != nil {
		return revguard.Event{}, err
	}
	return ev, nil
}

// checkFrame checks the frame at the start of p and returns its payload.
func checkFrame(p []byte) ([]byte, error) {
	if len(p) < recordHeaderSize {
		return nil, fmt.Errorf("%w: record header: %d of %d bytes", ErrCorrupt, len(p), recordHeaderSize)
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > MaxRecordSize {
		return nil, fmt.Errorf("%w: record length %d out of range", ErrCorrupt, n)
	}
	if uint64(len(p)-recordHeaderSize) < uint64(n) {
		return nil, fmt.Errorf("%w: record payload: %d of %d bytes", ErrCorrupt, len(p)-recordHeaderSize, n)
	}
	payload := p[recordHeaderSize : recordHeaderSize+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(p[4:]) {
		return nil, fmt.Errorf("%w: record checksum mismatch", ErrCorrupt)
	}
	return payload, nil
}

// decoder reads payload fields; the first failure sticks and later reads return zero.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: event payload: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	d.p = nil
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail("bad varint for %s", what)
		return 0
	}
	if n > 1 && d.p[n-1] == 0 {
		// A longer encoding than needed: its last byte adds nothing.
		d.fail("non-canonical varint for %s", what)
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	u := d.uvarint(what)
	return int64(u>>1) ^ -int64(u&1)
}

// nonZero reads a varint field whose presence bit promises a value other than zero.
func (d *decoder) nonZero(what string) int64 {
	v := d.varint(what)
	if v == 0 && d.err == nil {
		d.fail("%s present but zero", what)
	}
	return v
}

func (d *decoder) bytes(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.p) {
		d.fail("%s: %d bytes wanted, %d left", what, n, len(d.p))
		return nil
	}
	b := d.p[:n]
	d.p = d.p[n:]
	return b
}

// strBytes reads a length-prefixed, non-empty string, without copying it.
func (d *decoder) strBytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n == 0 {
		d.fail("%s present but empty", what)
		return nil
	}
	if n > uint64(len(d.p)) {
		d.fail("%s: length %d exceeds the %d bytes left", what, n, len(d.p))
		return nil
	}
	return d.bytes(int(n), what)
}

// str reads a string field; it allocates only when keep is set.
func (d *decoder) str(keep bool, what string) string {
	b := d.strBytes(what)
	if !keep || b == nil {
		return ""
	}
	return string(b)
}

func (d *decoder) timeAt(baseSec, baseNsec int64, delta bool, what string) time.Time {
	var sec, nsec int64
	if delta {
		sec = int64(uint64(baseSec) + uint64(d.varint(what)))
		nsec = baseNsec + d.varint(what)
	} else {
		sec = d.varint(what)
		n := d.uvarint(what)
		if n >= 1e9 {
			d.fail("%s: nanoseconds %d out of range", what, n)
		}
		nsec = int64(n)
	}
	if d.err != nil {
		return time.Time{}
	}
	if nsec < 0 || nsec >= 1e9 {
		d.fail("%s: nanoseconds %d out of range", what, nsec)
		return time.Time{}
	}
	if sec > maxUnixSec {
		d.fail("%s: seconds %d out of range", what, sec)
		return time.Time{}
	}
	t := time.Unix(sec, nsec).UTC()
	if t.IsZero() {
		d.fail("%s present but zero", what)
	}
	return t
}

// decodePayload decodes a payload into ev. With keep unset it only validates, without
// allocating the strings (the Open scan).
func decodePayload(p []byte, ev *revguard.Event, keep bool) error {
	*ev = revguard.Event{}
	d := decoder{p: p}
	ev.Seq = d.uvarint("seq")
	typ := d.bytes(1, "type")
	if d.err != nil {
		return d.err
	}
	ev.Type = revguard.EventType(typ[0])
	if !validType(ev.Type) {
		d.fail("unknown event type %d", typ[0])
		return d.err
	}
	mask := d.uvarint("field mask")
	if d.err != nil {
		return d.err
	}
	if mask&^fAll != 0 {
		d.fail("unknown field bits %#x", mask&^fAll)
		return d.err
	}
	if mask&fULID != 0 && mask&fReservationID == 0 {
		d.fail("ULID flag without reservation id")
		return d.err
	}
	var baseSec, baseNsec int64
	if mask&fTime != 0 {
		ev.Time = d.timeAt(0, 0, false, "time")
		baseSec, baseNsec = ev.Time.Unix(), int64(ev.Time.Nanosecond())
	}
	if mask&fSKU != 0 {
		ev.SKU = d.str(keep, "sku")
	}
	if mask&fULID != 0 {
		if b := d.bytes(16, "reservation id"); b != nil && keep {
			ev.ReservationID = formatULID(b)
		}
	} else if mask&fReservationID != 0 {
		var id [16]byte
		b := d.strBytes("reservation id")
		if parseULID(b, &id) {
			d.fail("ULID reservation id stored as text")
		} else if keep && b != nil {
			ev.ReservationID = string(b)
		}
	}
	if mask&fCustomerID != 0 {
		ev.CustomerID = d.str(keep, "customer id")
	}
	if mask&fQuantity != 0 {
		ev.Quantity = d.nonZero("quantity")
	}
	if mask&fExpiresAt != 0 {
		ev.ExpiresAt = d.timeAt(baseSec, baseNsec, true, "expires_at")
	}
	if mask&fIdempotencyKey != 0 {
		ev.IdempotencyKey = d.str(keep, "idempotency key")
	}
	if mask&fOrderRef != 0 {
		ev.OrderRef = d.str(keep, "order ref")
	}
	ev.Revived = mask&fRevived != 0
	if mask&fStock != 0 {
		ev.Stock = d.nonZero("stock")
	}
	if mask&fPerCustomerLimit != 0 {
		ev.PerCustomerLimit = d.nonZero("per_customer_limit")
	}
	if mask&fHoldSeconds != 0 {
		ev.HoldSeconds = d.nonZero("hold_seconds")
	}
	if mask&fOpensAt != 0 {
		ev.OpensAt = d.timeAt(baseSec, baseNsec, true, "opens_at")
	}
	if d.err == nil && len(d.p) != 0 {
		d.fail("%d trailing bytes", len(d.p))
	}
	if d.err != nil {
		*ev = revguard.Event{}
	}
	return d.err
}

// payloadSeq returns the sequence number at the start of a payload, without decoding
// the rest.
func payloadSeq(p []byte) (uint64, bool) {
	v, n := binary.Uvarint(p)
	return v, n > 0
}

func validType(t revguard.EventType) bool {
	return t >= revguard.EventSKUPut && t <= revguard.EventExpired
}
