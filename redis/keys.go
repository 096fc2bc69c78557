package redis

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"math"
	"strconv"
	"time"
)

// The key layout (docs/distributed.md). T is a shard's tag "{<ns>:<shard>}": every key
// of a shard carries it, so that a shard lives in one Cluster slot and one script can
// change a SKU, its reservations and the shard's outbox atomically.
//
//	T:sku:<sku>      hash    stock, limit, hold, opens, held, sold, last
//	T:own:<sku>      hash    customer → units held or confirmed
//	T:holds:<sku>    zset    reservation id → µs of its deadline, holds still held
//	T:idem:<sku>     hash    customer NUL key → reservation id
//	T:res:<id>       hash    sku, cust, qty, status, created, expires, confirmed, released, ref, idem
//	T:due            zset    sku → µs of its earliest hold's deadline (the sweepers' index)
//	T:skus           zset    every SKU id of the shard (score 0: ordered by id)
//	T:ids            zset    every reservation id still kept (score 0: ordered by id)
//	T:final          zset    reservation id → µs it became final (the retention purge)
//	T:seq            string  the shard's event counter
//	T:outbox         stream  the shard's events, in order
//	T:room:<sku>     hash    a SKU's waiting room (lua/room_lib.lua has the room's keys)
//	<ns>:meta        hash    shards
//	<ns>:rooms       set     the SKUs with a waiting room
//	<ns>:idem:{<h>}:<key>   hash   an idempotency key's binding: sku, qty, n (h: the customer's hash)
//	<ns>:idemflight:{<h>}:<key>  string  a node's mark of the key's first reserve in flight

// shardOf returns the shard of the SKU id.
func shardOf(id string, shards int) int {
	return int(crc32.ChecksumIEEE([]byte(id)) % uint32(shards))
}

// tagOf returns the tag of shard i in namespace ns.
func tagOf(ns string, i int) string { return "{" + ns + ":" + strconv.Itoa(i) + "}" }

// customerSlot returns the hash tag of a customer's idempotency keys. The customer is
// hashed: ids are printable but may hold braces and colons, which would move the hash
// tag or make two pairs share a key.
func customerSlot(customer string) string {
	h := sha256.Sum256([]byte(customer))
	return "{" + hex.EncodeToString(h[:16]) + "}"
}

// bindingKey returns the key of the binding of the customer's idempotency key.
func bindingKey(ns, customer, key string) string {
	return bindingKeyIn(ns, customerSlot(customer), key)
}

// bindingKeyIn is bindingKey of the customer whose slot is slot.
func bindingKeyIn(ns, slot, key string) string { return ns + ":idem:" + slot + ":" + key }

// flightKeys returns bindingKey and the key of the in-flight mark of the customer's
// idempotency key (ClaimIdempotent), hashing the customer once: the mark is in the
// binding's slot, under a prefix of its own, so that no key's mark is another key's
// binding (keys may hold colons).
func flightKeys(ns, customer, key string) (binding, flight string) {
	slot := customerSlot(customer)
	return bindingKeyIn(ns, slot, key), ns + ":idemflight:" + slot + ":" + key
}

// validNamespace reports whether ns can prefix keys and tags: 1 to 64 characters of
// [A-Za-z0-9._-].
func validNamespace(ns string) bool {
	if ns == "" || len(ns) > 64 {
		return false
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// timeLen is the length of a time in Redis: unix nanoseconds, zero-padded to 19
// digits, so that the scripts can compare and add them exactly as strings.
const timeLen = 19

// zeroTime is the stored form of the zero time (opens_at: open at once).
const zeroTime = "0000000000000000000"

// formatTime returns t as stored in Redis. t must be zero or representable (see
// representable).
func formatTime(t time.Time) string {
	if t.IsZero() {
		return zeroTime
	}
	var b [timeLen]byte
	n := t.UnixNano()
	for i := timeLen - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[:])
}

// parseTime parses a time as stored in Redis; "" and all zeros are the zero time.
func parseTime(s string) (time.Time, bool) {
	if s == "" || s == zeroTime {
		return time.Time{}, true
	}
	if len(s) != timeLen {
		return time.Time{}, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' || n > (math.MaxInt64-int64(c-'0'))/10 {
			return time.Time{}, false
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(0, n).UTC(), true
}

// IDLen is the length of a reservation id: 10 Crockford base32 digits of its creation
// time in milliseconds, 2 of its shard, 12 of its shard's event counter.
const IDLen = 24

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// crockVal maps a byte to its Crockford base32 value, or -1 (only the canonical upper
// case digits, so that an id has one spelling and one key).
var crockVal = func() [256]int8 {
	var v [256]int8
	for i := range v {
		v[i] = -1
	}
	for i := 0; i < len(crockford); i++ {
		v[crockford[i]] = int8(i)
	}
	return v
}()

// ParseID reports the shard of the reservation id, or false when id is not a
// reservation id of a deployment with that many shards.
func ParseID(id string, shards int) (shard int, ok bool) {
	if len(id) != IDLen {
		return 0, false
	}
	for i := 0; i < IDLen; i++ {
		if crockVal[id[i]] < 0 {
			return 0, false
		}
	}
	// The time's first digit holds its top bits: 10 digits are 50 bits, the time
	// fits in 48 until the year 10889, so it is below 8.
	if crockVal[id[0]] > 7 {
		return 0, false
	}
	shard = int(crockVal[id[10]])<<5 | int(crockVal[id[11]])
	if shard >= shards {
		return 0, false
	}
	return shard, true
}
