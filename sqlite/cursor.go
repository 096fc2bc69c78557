package sqlite

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"

	"github.com/revenueguard/revguard"
)

// A page cursor is opaque to clients. It is the base64url (no padding) encoding of
//
//	version (1 byte) | filter hash (8 bytes) | last id (1 to MaxReservationIDLen bytes) | MAC (16 bytes)
//
// The filter hash is the first 8 bytes of SHA-256 over the query's filter (SKU,
// customer, status, order); the MAC is HMAC-SHA-256, truncated to 16 bytes, over
// everything before it, keyed by a random key stored in the database. A client can
// therefore neither forge a cursor, nor alter one, nor reuse one with another query:
// each fails with CodeInvalidRequest. Pages continue after the last id (keyset
// pagination), so rows inserted between two pages are never seen twice and never
// shift a page.
const (
	cursorVersion       = 1
	cursorKeySize       = 32
	cursorHashSize      = 8
	cursorMACSize       = 16
	maxReservationIDLen = 128
	maxCursorLen        = 4 * (1 + cursorHashSize + maxReservationIDLen + cursorMACSize) / 3 // base64 length bound
)

// filterHash binds a cursor to the query it came from.
func filterHash(f revguard.OrderFilter) [cursorHashSize]byte {
	h := sha256.New()
	order := byte(0)
	if f.NewestFirst {
		order = 1
	}
	for _, s := range []string{f.SKU, f.CustomerID, string(f.Status)} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	h.Write([]byte{order})
	var out [cursorHashSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// encodeCursor returns the cursor of the page after lastID for the query f.
func encodeCursor(key []byte, f revguard.OrderFilter, lastID string) string {
	fh := filterHash(f)
	b := make([]byte, 0, 1+cursorHashSize+len(lastID)+cursorMACSize)
	b = append(b, cursorVersion)
	b = append(b, fh[:]...)
	b = append(b, lastID...)
	b = append(b, cursorMAC(key, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the last id of the previous page encoded in f.Cursor, or fails
// with CodeInvalidRequest when the cursor is malformed, forged, or from another query.
func decodeCursor(key []byte, f revguard.OrderFilter) (string, error) {
	bad := revguard.Errorf(revguard.CodeInvalidRequest, "invalid cursor: use next_cursor from the previous page of the same query")
	if len(f.Cursor) > maxCursorLen {
		return "", bad
	}
	b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
	if err != nil || len(b) < 1+cursorHashSize+1+cursorMACSize || b[0] != cursorVersion {
		return "", bad
	}
	body, mac := b[:len(b)-cursorMACSize], b[len(b)-cursorMACSize:]
	if !hmac.Equal(mac, cursorMAC(key, body)) {
		return "", bad
	}
	fh := filterHash(f)
	if !hmac.Equal(body[1:1+cursorHashSize], fh[:]) {
		return "", revguard.Errorf(revguard.CodeInvalidRequest, "cursor belongs to another query: repeat the same filters to page on")
	}
	id := string(body[1+cursorHashSize:])
	if len(id) > maxReservationIDLen {
		return "", bad
	}
	return id, nil
}

// cursorMAC authenticates body with key.
func cursorMAC(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)[:cursorMACSize]
}
