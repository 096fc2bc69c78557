package journal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

var (
	t0       = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	ulidText = "01JQ3Z8Y6N5V7W2X9A4B6C8D0E" // canonical: stored as 16 bytes
)

// eventCases covers every event type and the edge values of every field.
var eventCases = []struct {
	name string
	ev   revguard.Event
}{
	{"SKUPut", revguard.Event{Seq: 1, Type: revguard.EventSKUPut, Time: t0, SKU: "sneaker-42",
		Stock: 1000, PerCustomerLimit: 2, HoldSeconds: 600, OpensAt: t0.Add(time.Hour)}},
	{"SKUPutOpensBeforeTime", revguard.Event{Seq: 2, Type: revguard.EventSKUPut, Time: t0, SKU: "a",
		Stock: 1, PerCustomerLimit: 1, HoldSeconds: 1, OpensAt: t0.Add(-time.Hour - time.Nanosecond)}},
	{"SKUPutZeroStock", revguard.Event{Seq: 3, Type: revguard.EventSKUPut, Time: t0, SKU: "b", HoldSeconds: 60}},
	{"Reserved", revguard.Event{Seq: 1 << 40, Type: revguard.EventReserved, Time: t0, SKU: "sneaker-42",
		ReservationID: ulidText, CustomerID: "cus_123", Quantity: 2, ExpiresAt: t0.Add(10 * time.Minute),
		IdempotencyKey: "idem-1"}},
	{"ReservedTextID", revguard.Event{Seq: 5, Type: revguard.EventReserved, Time: t0, SKU: "s",
		ReservationID: "res-not-a-ulid", CustomerID: "c", Quantity: 1, ExpiresAt: t0.Add(time.Second)}},
	{"ReservedLowercaseULID", revguard.Event{Seq: 6, Type: revguard.EventReserved, Time: t0, SKU: "s",
		ReservationID: strings.ToLower(ulidText), CustomerID: "c", Quantity: 1}},
	{"ReservedULIDOverflow", revguard.Event{Seq: 7, Type: revguard.EventReserved, Time: t0, SKU: "s",
		ReservationID: "8" + ulidText[1:], CustomerID: "c", Quantity: 1}},
	{"ReservedMaxULID", revguard.Event{Seq: 8, Type: revguard.EventReserved, Time: t0, SKU: "s",
		ReservationID: "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", CustomerID: "c", Quantity: 1}},
	{"ReservedZeroULID", revguard.Event{Seq: 9, Type: revguard.EventReserved, Time: t0, SKU: "s",
		ReservationID: "00000000000000000000000000", CustomerID: "c", Quantity: 1}},
	{"Confirmed", revguard.Event{Seq: 10, Type: revguard.EventConfirmed, Time: t0, SKU: "s",
		ReservationID: ulidText, CustomerID: "c", Quantity: 1, OrderRef: "order-9"}},
	{"ConfirmedRevived", revguard.Event{Seq: 11, Type: revguard.EventConfirmed, Time: t0, SKU: "s",
		ReservationID: ulidText, CustomerID: "c", Quantity: 3, Revived: true}},
	{"Released", revguard.Event{Seq: 12, Type: revguard.EventReleased, Time: t0, SKU: "s",
		ReservationID: ulidText, CustomerID: "c", Quantity: 1}},
	{"Expired", revguard.Event{Seq: 13, Type: revguard.EventExpired, Time: t0, SKU: "s",
		ReservationID: ulidText, CustomerID: "c", Quantity: 1}},
	{"MinimalZeroSeq", revguard.Event{Type: revguard.EventExpired}},
	{"NoTimeButExpiry", revguard.Event{Seq: 1, Type: revguard.EventReserved, ExpiresAt: t0}},
	{"MaxSeqAndExtremes", revguard.Event{Seq: math.MaxUint64, Type: revguard.EventSKUPut,
		Time: time.Unix(0, 0), Stock: math.MaxInt64, PerCustomerLimit: math.MinInt64,
		HoldSeconds: -1, OpensAt: time.Unix(1<<62, 999999999)}},
	{"FarPastAndFuture", revguard.Event{Seq: 2, Type: revguard.EventReserved,
		Time: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), ExpiresAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
	{"UnicodeAndLongStrings", revguard.Event{Seq: 3, Type: revguard.EventConfirmed, Time: t0,
		SKU: strings.Repeat("x", 128), ReservationID: strings.Repeat("r", 300),
		CustomerID: "ünïcødé 顧客 🎟", OrderRef: strings.Repeat("o", 5000), IdempotencyKey: "\x00\xff"}},
	{"NonUTCLocation", revguard.Event{Seq: 4, Type: revguard.EventReserved,
		Time: t0.In(time.FixedZone("X", 3600)), ExpiresAt: t0.Add(time.Minute).In(time.FixedZone("Y", -7200))}},
}

func TestEncodeDecodeEvent(t *testing.T) {
	for _, tc := range eventCases {
		t.Run(tc.name, func(t *testing.T) {
			rec := journal.EncodeEvent(nil, &tc.ev)
			got, err := journal.DecodeEvent(rec)
			if err != nil {
				t.Fatalf("DecodeEvent(EncodeEvent(%+v)): %v", tc.ev, err)
			}
			if !sameEvent(got, tc.ev) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.ev)
			}
			// One encoding per event: encoding the decoded event gives the same bytes.
			if again := journal.EncodeEvent(nil, &got); !bytes.Equal(again, rec) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, rec)
			}
			// EncodeEvent appends.
			prefix := []byte("abc")
			if out := journal.EncodeEvent(prefix, &tc.ev); !bytes.Equal(out[:3], prefix) || !bytes.Equal(out[3:], rec) {
				t.Fatalf("EncodeEvent(prefix) = %x, want %x%x", out, prefix, rec)
			}
		})
	}
}

// TestRecordSize keeps a typical reservation event small: at a million events a second
// the disk write rate matters.
func TestRecordSize(t *testing.T) {
	ev := revguard.Event{Seq: 123456789, Type: revguard.EventReserved, Time: t0, SKU: "drop-2026-sneaker-42",
		ReservationID: ulidText, CustomerID: "cus_01JQ3Z8Y6N5V7W2X", Quantity: 1,
		ExpiresAt: t0.Add(10 * time.Minute), IdempotencyKey: "c0ffee00-1234-5678-9abc-def012345678"}
	if n := len(journal.EncodeEvent(nil, &ev)); n > 130 {
		t.Errorf("reservation record with idempotency key is %d bytes, want <= 130", n)
	}
	ev.IdempotencyKey = ""
	if n := len(journal.EncodeEvent(nil, &ev)); n > 90 {
		t.Errorf("reservation record is %d bytes, want <= 90", n)
	}
}

func TestEncodeEventNoAlloc(t *testing.T) {
	ev := eventCases[3].ev
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		buf = journal.EncodeEvent(buf[:0], &ev)
	})
	if allocs != 0 {
		t.Errorf("EncodeEvent allocates %v times per call, want 0", allocs)
	}
}

func sameEvent(a, b revguard.Event) bool {
	return a.Seq == b.Seq && a.Type == b.Type && a.Time.Equal(b.Time) && a.SKU == b.SKU &&
		a.Stock == b.Stock && a.PerCustomerLimit == b.PerCustomerLimit && a.HoldSeconds == b.HoldSeconds &&
		a.OpensAt.Equal(b.OpensAt) && a.ReservationID == b.ReservationID && a.CustomerID == b.CustomerID &&
		a.Quantity == b.Quantity && a.ExpiresAt.Equal(b.ExpiresAt) && a.IdempotencyKey == b.IdempotencyKey &&
		a.OrderRef == b.OrderRef && a.Revived == b.Revived
}

// frame wraps a payload in a valid record frame, so that tests and the fuzzer reach the
// payload decoder past the checksum.
func frame(payload []byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	return append(out, payload...)
}

func TestDecodeEventErrors(t *testing.T) {
	valid := journal.EncodeEvent(nil, &eventCases[3].ev)
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-1] ^= 0x40
	huge := bytes.Clone(valid)
	binary.LittleEndian.PutUint32(huge, 1<<30)
	tests := []struct {
		name string
		p    []byte
	}{
		{"Empty", nil},
		{"ShortHeader", valid[:7]},
		{"ZeroLength", frame(nil)},
		{"HugeLength", huge},
		{"JustOverMax", binary.LittleEndian.AppendUint32(nil, journal.MaxRecordSize+1)},
		{"ShortPayload", valid[:len(valid)-1]},
		{"Trailing", append(bytes.Clone(valid), 0)},
		{"ChecksumMismatch", flipped},
		{"UnknownTypeZero", frame([]byte{1, 0, 0})},
		{"UnknownTypeSix", frame([]byte{1, 6, 0})},
		{"MissingMask", frame([]byte{1, 2})},
		{"UnknownFieldBit", frame([]byte{1, 2, 0x80, 0x80, 0x01})},
		{"NonCanonicalSeq", frame([]byte{0x81, 0x00, 2, 0})},
		{"SeqOverflow", frame([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 2, 0})},
		{"ULIDWithoutID", frame([]byte{1, 2, 0x80, 0x40})},
		{"PayloadTrailing", frame([]byte{1, 2, 0, 0})},
		{"EmptyString", frame([]byte{1, 2, 0x02, 0})},
		{"StringPastEnd", frame([]byte{1, 2, 0x02, 5, 'a'})},
		{"StringHugeLength", frame([]byte{1, 2, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'})},
		{"ZeroQuantity", frame([]byte{1, 2, 0x10, 0})},
		{"TimeNanosTooBig", frame(append([]byte{1, 2, 0x01, 2}, binary.AppendUvarint(nil, 1e9)...))},
		{"TimeZeroExplicit", frame(append(append([]byte{1, 2, 0x01}, binary.AppendVarint(nil, -62135596800)...), 0))},
		{"TimeSecondsOverflow", frame(append(append([]byte{1, 2, 0x01}, binary.AppendVarint(nil, math.MaxInt64)...), 0))},
		{"ExpiryNanosNegative", frame([]byte{1, 2, 0x20, 0, 1})},
		{"ULIDTruncated", frame([]byte{1, 2, 0x80 | 0x04, 0x40, 1, 2, 3})},
		{"ULIDStoredAsText", frame(append([]byte{1, 2, 0x04, 26}, ulidText...))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := journal.DecodeEvent(tc.p)
			if !errors.Is(err, journal.ErrCorrupt) {
				t.Fatalf("DecodeEvent(%x) = %+v, %v; want an error wrapping ErrCorrupt", tc.p, ev, err)
			}
			if ev != (revguard.Event{}) {
				t.Fatalf("DecodeEvent(%x) returned %+v with its error, want the zero Event", tc.p, ev)
			}
		})
	}
}
