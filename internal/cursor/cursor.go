// Package cursor encodes and checks the opaque page cursors of ledger queries
// (revguard.OrderFilter.Cursor), for every Ledger implementation, so that a cursor means
// the same whichever backend issued it.
//
// A cursor is the base64url (no padding) encoding of
//
//	version (1 byte) | filter hash (8 bytes) | last id (1 to MaxIDLen bytes) | MAC (16 bytes)
//
// The filter hash is the first 8 bytes of SHA-256 over the query's filter (SKU,
// customer, status, order); the MAC is HMAC-SHA-256, truncated to 16 bytes, over
// everything before it, keyed by a random key that the ledger stores (KeySize bytes).
// A client can therefore neither forge a cursor, nor alter one, nor reuse one with
// another query: each fails with CodeInvalidRequest. Pages continue after the last id
// (keyset pagination), so rows inserted between two pages are never seen twice and
// never shift a page.
package cursor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"

	"github.com/revenueguard/revguard"
)

// KeySize is the size of a cursor key in bytes.
const KeySize = 32

// MaxIDLen is the longest reservation id a cursor carries.
const MaxIDLen = 128

const (
	version  = 1
	hashSize = 8
	macSize  = 16
	maxLen   = 4 * (1 + hashSize + MaxIDLen + macSize) / 3 // base64 length bound
)

// Page is where one page of a ledger query starts, and how many items it holds.
type Page struct {
	Limit int    // 1 to revguard.MaxOrderLimit
	After string // the last id of the previous page; "" for the first page
}

// Parse checks f and returns the page it asks for. It fails with CodeInvalidRequest for
// a limit out of range, an unknown status, or a cursor that is not the next cursor of
// the same query under key.
func Parse(key []byte, f revguard.OrderFilter) (Page, error) {
	p := Page{Limit: f.Limit}
	switch {
	case p.Limit == 0:
		p.Limit = revguard.DefaultOrderLimit
	case p.Limit < 1 || p.Limit > revguard.MaxOrderLimit:
		return Page{}, revguard.Errorf(revguard.CodeInvalidRequest, "limit must be between 1 and %d", revguard.MaxOrderLimit)
	}
	if f.Status != "" && !f.Status.Valid() {
		return Page{}, revguard.Errorf(revguard.CodeInvalidRequest, "status must be one of held, confirmed, released, expired")
	}
	if f.Cursor != "" {
		var err error
		if p.After, err = Decode(key, f); err != nil {
			return Page{}, err
		}
	}
	return p, nil
}

// filterHash binds a cursor to the query it came from.
func filterHash(f revguard.OrderFilter) [hashSize]byte {
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
	var out [hashSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Encode returns the cursor of the page after lastID for the query f.
func Encode(key []byte, f revguard.OrderFilter, lastID string) string {
	fh := filterHash(f)
	b := make([]byte, 0, 1+hashSize+len(lastID)+macSize)
	b = append(b, version)
	b = append(b, fh[:]...)
	b = append(b, lastID...)
	b = append(b, mac(key, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode returns the last id of the previous page encoded in f.Cursor, or fails with
// CodeInvalidRequest when the cursor is malformed, forged, or from another query.
func Decode(key []byte, f revguard.OrderFilter) (string, error) {
	bad := revguard.Errorf(revguard.CodeInvalidRequest, "invalid cursor: use next_cursor from the previous page of the same query")
	if len(f.Cursor) > maxLen {
		return "", bad
	}
	b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
	if err != nil || len(b) < 1+hashSize+1+macSize || b[0] != version {
		return "", bad
	}
	body, m := b[:len(b)-macSize], b[len(b)-macSize:]
	if !hmac.Equal(m, mac(key, body)) {
		return "", bad
	}
	fh := filterHash(f)
	if !hmac.Equal(body[1:1+hashSize], fh[:]) {
		return "", revguard.Errorf(revguard.CodeInvalidRequest, "cursor belongs to another query: repeat the same filters to page on")
	}
	id := string(body[1+hashSize:])
	if len(id) > MaxIDLen {
		return "", bad
	}
	return id, nil
}

// mac authenticates body with key.
func mac(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)[:macSize]
}
