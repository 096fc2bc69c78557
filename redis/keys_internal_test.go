package redis

import (
	"math"
	"testing"
	"time"
)

func TestTimeRoundTrip(t *testing.T) {
	for _, tt := range []time.Time{
		{}, time.Unix(0, 1), time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC),
		time.Date(2001, 9, 9, 1, 46, 39, 999999999, time.UTC), time.Unix(0, math.MaxInt64),
	} {
		s := formatTime(tt)
		got, ok := parseTime(s)
		if len(s) != timeLen || !ok || !got.Equal(tt) {
			t.Fatalf("formatTime(%v) = %q, parsed back %v, %v", tt, s, got, ok)
		}
	}
	for _, bad := range []string{"1", "-000000000000000001", "9223372036854775808", "99999999999999999999", "00000000000000000x0"} {
		if _, ok := parseTime(bad); ok {
			t.Fatalf("parseTime(%q) accepted", bad)
		}
	}
}

func TestParseID(t *testing.T) {
	for _, tt := range []struct {
		id     string
		shards int
		shard  int
		ok     bool
	}{
		{"01KBXNS000000000000000G1", 16, 0, true},
		{"01KBXNS0000F00000000000G", 16, 15, true},
		{"01KBXNS0000G00000000000G", 16, 0, false}, // shard 16 of 16
		{"01KBXNS0001000000000000G", 64, 32, true}, // shard digits 1, 0
		{"81KBXNS000000000000000G1", 16, 0, false}, // a time past the year 10889
		{"01KBXNS0000U00000000000G", 16, 0, false}, // U is not a Crockford digit
		{"01kbxns000000000000000g1", 16, 0, false}, // lower case: one spelling per id
		{"01KBXNS000000000000000G", 16, 0, false},  // 23 characters
		{"01KBXNS000000000000000G1", 1, 0, true},
	} {
		shard, ok := ParseID(tt.id, tt.shards)
		if shard != tt.shard || ok != tt.ok {
			t.Errorf("ParseID(%q, %d) = %d, %v; want %d, %v", tt.id, tt.shards, shard, ok, tt.shard, tt.ok)
		}
	}
}

func TestBindingKey(t *testing.T) {
	// Customers whose ids hold braces and colons never share a key, and the hash tag
	// is the customer's hash.
	a := bindingKey("rg", "a}:b", "c")
	b := bindingKey("rg", "a", "b}:c")
	if a == b {
		t.Fatalf("two (customer, key) pairs share the binding key %q", a)
	}
	if want := "rg:idem:{"; a[:len(want)] != want || a[len(a)-3:] != "}:c" {
		t.Fatalf("bindingKey = %q", a)
	}
}
