package journal

// The 26-character text of a ULID (Crockford base32 of 128 bits, as the inproc engine
// writes reservation ids) is stored as its 16 bytes, 10 bytes less per reservation
// event. Only the canonical text (upper case, no ambiguous letters, first character at
// most '7') is packed, so that decoding gives back exactly the same string.

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// crockfordValue returns the value of a canonical Crockford base32 digit, or -1.
func crockfordValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'H':
		return int(c-'A') + 10
	case c == 'J' || c == 'K':
		return int(c-'J') + 18
	case c == 'M' || c == 'N':
		return int(c-'M') + 20
	case 'P' <= c && c <= 'T':
		return int(c-'P') + 22
	case 'V' <= c && c <= 'Z':
		return int(c-'V') + 27
	}
	return -1
}

// parseULID reports whether s is the canonical text of a ULID and, if so, stores its
// bytes (big endian) in id.
func parseULID[T ~string | ~[]byte](s T, id *[16]byte) bool {
	if len(s) != 26 || s[0] > '7' {
		return false
	}
	var hi, lo uint64
	for i := range 26 {
		v := crockfordValue(s[i])
		if v < 0 {
			return false
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	for i := range 8 {
		id[i] = byte(hi >> (56 - 8*i))
		id[8+i] = byte(lo >> (56 - 8*i))
	}
	return true
}

// formatULID returns the canonical text of the 16 bytes of a ULID.
func formatULID(b []byte) string {
	var hi, lo uint64
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
