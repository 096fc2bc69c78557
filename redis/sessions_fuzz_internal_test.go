package redis

import (
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// FuzzSessionRecord feeds arbitrary values to sessDecode, the decoder of what a
// session's key holds. It must never panic; whatever it accepts is a valid session that
// sessEncode writes back byte for byte (one form per session), and whatever sessEncode
// writes it reads back unchanged.
func FuzzSessionRecord(f *testing.F) {
	for _, seed := range []string{
		"v1:1796205600000000000:1796209200000000000:c-42",        // a real record
		"v1:1796205600000000000:1796209200000000000:a b:c\u00e9", // colons and spaces in the id
		"v1:-5:7:x",                   // before 1970
		"v1:1:2:",                     // empty customer
		"v1:2:1:c",                    // expires before created
		"v1:01:2:c",                   // not canonical
		"v1:+1:2:c",                   // sign
		"v1:1:99999999999999999999:c", // overflow
		"v2:1:2:c",                    // another version
		"v1:1:2",                      // truncated
		"v1:1:2:c\x00",                // control character
		"v1:1:2:" + strings.Repeat("x", revguard.MaxCustomerIDLen+1), // too long
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := sessDecode(v)
		if err != nil {
			return
		}
		if !revguard.ValidCustomerID(s.CustomerID) || !s.CreatedAt.Before(s.ExpiresAt) {
			t.Fatalf("sessDecode(%q) accepted an invalid session %+v", v, s)
		}
		if s.CreatedAt.Location() != time.UTC || s.ExpiresAt.Location() != time.UTC {
			t.Fatalf("sessDecode(%q): times not in UTC", v)
		}
		if back := sessEncode(s); back != v {
			t.Fatalf("sessDecode(%q) = %+v, which encodes as %q", v, s, back)
		}
		again, err := sessDecode(sessEncode(s))
		if err != nil || !sessSame(again, s) {
			t.Fatalf("round trip of %+v: %+v, %v", s, again, err)
		}
	})
}

// FuzzSessionRevocation feeds arbitrary revocation messages to sessParseHash: no panic,
// and a hash it accepts has exactly one spelling (no other message evicts it).
func FuzzSessionRevocation(f *testing.F) {
	h := revguard.HashSessionToken("token")
	good := sessHashString(h)
	for _, seed := range []string{
		good,                  // a real message
		good[:42] + "B",       // stray bits in the last character
		good + "=",            // padding
		good[:42],             // short
		strings.ToUpper(good), // another hash, or none
		"+/" + good[2:],       // the standard alphabet
		"", "\x00", "PONG",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		h, ok := sessParseHash(msg)
		if ok && sessHashString(h) != msg {
			t.Fatalf("sessParseHash(%q) accepted a second spelling of %q", msg, sessHashString(h))
		}
	})
}

// TestSessionRecordRoundTrip checks the decoder on records the encoder wrote.
func TestSessionRecordRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)
	for _, s := range []revguard.Session{
		{CustomerID: "c-42", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{CustomerID: "with:colons and spaces", CreatedAt: now, ExpiresAt: now.Add(revguard.MaxSessionTTL)},
		{CustomerID: strings.Repeat("é", revguard.MaxCustomerIDLen), CreatedAt: now, ExpiresAt: now.Add(time.Minute)},
	} {
		got, err := sessDecode(sessEncode(s))
		if err != nil || !sessSame(got, s) {
			t.Errorf("sessDecode(sessEncode(%+v)) = %+v, %v", s, got, err)
		}
	}
	h := revguard.HashSessionToken("t")
	if got, ok := sessParseHash(sessHashString(h)); !ok || got != h {
		t.Errorf("sessParseHash(sessHashString(h)) = %x, %v", got, ok)
	}
}

func sessSame(a, b revguard.Session) bool {
	return a.CustomerID == b.CustomerID && a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}
