package redis

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
)

// A session record, the value of a session's key, is
//
//	v1:<created>:<expires>:<customer id>
//
// with the times in Unix nanoseconds (decimal, canonical) and the customer id last, so
// that it may hold any printable character. Only sessDecode reads it; anything it did not
// write itself is refused.
const sessRecordVersion = "v1:"

// sessEncode returns the record of s.
func sessEncode(s revguard.Session) string {
	b := make([]byte, 0, len(sessRecordVersion)+2*20+2+len(s.CustomerID))
	b = append(b, sessRecordVersion...)
	b = strconv.AppendInt(b, s.CreatedAt.UnixNano(), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, s.ExpiresAt.UnixNano(), 10)
	b = append(b, ':')
	b = append(b, s.CustomerID...)
	return string(b)
}

// errSessRecord reports a session record that sessEncode did not write.
var errSessRecord = errors.New("malformed session record")

// sessDecode reads a record written by sessEncode. It refuses anything else: another
// version, a non-canonical number, an invalid customer id, or an expiry that is not
// after the creation.
func sessDecode(v string) (revguard.Session, error) {
	rest, ok := strings.CutPrefix(v, sessRecordVersion)
	if !ok {
		return revguard.Session{}, errSessRecord
	}
	created, rest, ok1 := strings.Cut(rest, ":")
	expires, customer, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || !revguard.ValidCustomerID(customer) {
		return revguard.Session{}, errSessRecord
	}
	c, err1 := sessParseNanos(created)
	e, err2 := sessParseNanos(expires)
	if err1 != nil || err2 != nil || e <= c {
		return revguard.Session{}, errSessRecord
	}
	return revguard.Session{
		CustomerID: customer,
		CreatedAt:  time.Unix(0, c).UTC(),
		ExpiresAt:  time.Unix(0, e).UTC(),
	}, nil
}

// sessParseNanos parses a canonical decimal int64: what strconv.FormatInt writes.
func sessParseNanos(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != s {
		return 0, errSessRecord
	}
	return n, nil
}

// sessHashString is a token hash as it appears in keys and revocation messages:
// base64url without padding, 43 characters.
func sessHashString(h [32]byte) string { return base64.RawURLEncoding.EncodeToString(h[:]) }

// sessParseHash reads what sessHashString wrote.
func sessParseHash(s string) (h [32]byte, ok bool) {
	if base64.RawURLEncoding.EncodedLen(len(h)) != len(s) {
		return h, false
	}
	n, err := base64.RawURLEncoding.Decode(h[:], []byte(s))
	// Strict: the last character may carry no stray bits, so each hash has one form.
	return h, err == nil && n == len(h) && sessHashString(h) == s
}

// sessStoreError turns a failed Redis call into the error the API answers. A Redis that
// cannot be reached, times out, is loading, read-only, out of memory or refuses us is
// CodeUnavailable (503: the caller may retry); only a key of the wrong type (a bug, or
// a foreign key in our namespace) is internal.
// what names the store in the client-safe detail.
func sessStoreError(op, what string, err error) error {
	if goredis.HasErrorPrefix(err, "WRONGTYPE") {
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	return fmt.Errorf("redis: %s: %w: %w", op, revguard.Errorf(revguard.CodeUnavailable, "%s unavailable", what), err)
}
