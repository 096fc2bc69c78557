package journal

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

// TestULID checks the packing against github.com/oklog/ulid/v2, which the engine uses
// to make reservation ids: same bytes, same text, and only canonical text is packed.
func TestULID(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		var u ulid.ULID
		for i := range u {
			u[i] = byte(r.Uint32())
		}
		text := u.String()
		var id [16]byte
		if !parseULID(text, &id) {
			t.Fatalf("parseULID(%q) refused a ULID", text)
		}
		if id != [16]byte(u) {
			t.Fatalf("parseULID(%q) = %x, want %x", text, id, u[:])
		}
		if got := formatULID(id[:]); got != text {
			t.Fatalf("formatULID(%x) = %q, want %q", id, got, text)
		}
		if parseULID(strings.ToLower(text), &id) && strings.ToLower(text) != text {
			t.Fatalf("parseULID accepted lower case %q", strings.ToLower(text))
		}
	}
	for _, s := range []string{
		"", "01JQ3Z8Y6N5V7W2X9A4B6C8D0", "01JQ3Z8Y6N5V7W2X9A4B6C8D0EE",
		"81JQ3Z8Y6N5V7W2X9A4B6C8D0E", // more than 128 bits
		"01JQ3Z8Y6N5V7W2X9A4B6C8D0I", "01JQ3Z8Y6N5V7W2X9A4B6C8D0L", "01JQ3Z8Y6N5V7W2X9A4B6C8D0O",
		"01JQ3Z8Y6N5V7W2X9A4B6C8D0U", "01JQ3Z8Y6N5V7W2X9A4B6C8D0-", "01JQ3Z8Y6N5V7W2X9A4B6C8D0\xff",
	} {
		var id [16]byte
		if parseULID(s, &id) || parseULID([]byte(s), &id) {
			t.Errorf("parseULID(%q) accepted a non-canonical ULID", s)
		}
	}
}
