package cursor_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/cursor"
)

var key = bytes.Repeat([]byte{7}, cursor.KeySize)

func TestParse(t *testing.T) {
	f := revguard.OrderFilter{SKU: "shoe", Limit: 5}
	next := cursor.Encode(key, f, "01ID")
	tests := []struct {
		name string
		f    revguard.OrderFilter
		want cursor.Page
		code revguard.Code
	}{
		{"DefaultLimit", revguard.OrderFilter{}, cursor.Page{Limit: revguard.DefaultOrderLimit}, ""},
		{"MaxLimit", revguard.OrderFilter{Limit: revguard.MaxOrderLimit}, cursor.Page{Limit: revguard.MaxOrderLimit}, ""},
		{"Cursor", revguard.OrderFilter{SKU: "shoe", Limit: 5, Cursor: next}, cursor.Page{Limit: 5, After: "01ID"}, ""},
		{"CursorOtherLimit", revguard.OrderFilter{SKU: "shoe", Limit: 9, Cursor: next}, cursor.Page{Limit: 9, After: "01ID"}, ""},
		{"ErrNegativeLimit", revguard.OrderFilter{Limit: -1}, cursor.Page{}, revguard.CodeInvalidRequest},
		{"ErrLimitTooLarge", revguard.OrderFilter{Limit: revguard.MaxOrderLimit + 1}, cursor.Page{}, revguard.CodeInvalidRequest},
		{"ErrStatus", revguard.OrderFilter{Status: "shipped"}, cursor.Page{}, revguard.CodeInvalidRequest},
		{"ErrOtherQuery", revguard.OrderFilter{SKU: "hat", Cursor: next}, cursor.Page{}, revguard.CodeInvalidRequest},
		{"ErrOtherOrder", revguard.OrderFilter{SKU: "shoe", NewestFirst: true, Cursor: next}, cursor.Page{}, revguard.CodeInvalidRequest},
		{"ErrOtherKey", revguard.OrderFilter{SKU: "shoe", Cursor: cursor.Encode(make([]byte, cursor.KeySize), f, "01ID")}, cursor.Page{}, revguard.CodeInvalidRequest},
		{"ErrGarbage", revguard.OrderFilter{Cursor: "not a cursor!"}, cursor.Page{}, revguard.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cursor.Parse(key, tt.f)
			if code := revguard.ErrorCode(err); code != tt.code {
				t.Fatalf("Parse(%+v): error %v (code %q), want code %q", tt.f, err, code, tt.code)
			}
			if got != tt.want {
				t.Fatalf("Parse(%+v) = %+v, want %+v", tt.f, got, tt.want)
			}
		})
	}
}

// TestEncodeDecode checks the round trip of every id length a cursor carries, and that
// a cursor is bound to each field of its filter.
func TestEncodeDecode(t *testing.T) {
	f := revguard.OrderFilter{SKU: "s", CustomerID: "c", Status: revguard.StatusHeld}
	for n := 1; n <= cursor.MaxIDLen; n++ {
		id := strings.Repeat("x", n)
		f.Cursor = cursor.Encode(key, f, id)
		got, err := cursor.Decode(key, f)
		if err != nil || got != id {
			t.Fatalf("id of %d bytes: Decode = %q, %v", n, got, err)
		}
	}
	f.Cursor = cursor.Encode(key, f, "01ID")
	for _, other := range []revguard.OrderFilter{
		{SKU: "t", CustomerID: "c", Status: revguard.StatusHeld},
		{SKU: "s", CustomerID: "d", Status: revguard.StatusHeld},
		{SKU: "s", CustomerID: "c", Status: revguard.StatusExpired},
		{SKU: "s", CustomerID: "c", Status: revguard.StatusHeld, NewestFirst: true},
		{SKU: "sc", Status: revguard.StatusHeld}, // the same bytes, split differently
	} {
		other.Cursor = f.Cursor
		if _, err := cursor.Decode(key, other); revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
			t.Errorf("cursor of %+v accepted for %+v: %v", f, other, err)
		}
	}
}

// FuzzDecode feeds arbitrary cursors and filters to Decode: it never panics, and it
// accepts only what Encode made for the same filter under the same key.
func FuzzDecode(f *testing.F) {
	issued := cursor.Encode(key, revguard.OrderFilter{SKU: "a"}, "01ID")
	raw := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	seeds := []struct {
		cursor, sku, customer, status string
		newest                        bool
	}{
		{issued, "a", "", "", false},                                     // valid: decodes to 01ID
		{issued, "b", "", "", false},                                     // another query's cursor
		{issued, "a", "", "", true},                                      // the other order
		{issued, "a", "c", "", false},                                    // another customer
		{issued, "a", "", "held", false},                                 // another status
		{issued[1:], "a", "", "", false},                                 // truncated at the front
		{issued[:len(issued)-1], "a", "", "", false},                     // truncated at the end
		{issued + "A", "a", "", "", false},                               // extended
		{"", "a", "", "", false},                                         // no cursor
		{"%%%", "a", "", "", false},                                      // not base64url
		{raw([]byte{1}), "a", "", "", false},                             // too short
		{raw(make([]byte, 1+8+1+16)), "", "", "", false},                 // shortest shape, zero MAC
		{raw(make([]byte, 200)), "a", "", "", false},                     // longer than any real one
		{raw(append([]byte{2}, make([]byte, 40)...)), "", "", "", false}, // unknown version
	}
	for _, s := range seeds {
		f.Add(s.cursor, s.sku, s.customer, s.status, s.newest)
	}
	f.Fuzz(func(t *testing.T, c, sku, customer, status string, newest bool) {
		flt := revguard.OrderFilter{SKU: sku, CustomerID: customer, Status: revguard.Status(status), NewestFirst: newest, Cursor: c}
		id, err := cursor.Decode(key, flt)
		if err != nil {
			if code := revguard.ErrorCode(err); code != revguard.CodeInvalidRequest {
				t.Fatalf("Decode(%+v): error %v (code %q), want invalid_request", flt, err, code)
			}
			return
		}
		// Accepted: the bytes must be exactly those Encode makes for this filter and id
		// (base64 may spell the same bytes in more than one way).
		got, _ := base64.RawURLEncoding.DecodeString(c)
		want, _ := base64.RawURLEncoding.DecodeString(cursor.Encode(key, flt, id))
		if !bytes.Equal(got, want) {
			t.Fatalf("Decode accepted %q for %+v (id %q), which Encode did not make", c, flt, id)
		}
		if id == "" || len(id) > cursor.MaxIDLen {
			t.Fatalf("Decode returned id %q of %d bytes", id, len(id))
		}
	})
}
