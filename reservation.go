package revguard

import (
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of reservation fields (docs/api.md).
const (
	MaxCustomerIDLen     = 128 // characters
	MaxOrderRefLen       = 128 // characters
	MaxIdempotencyKeyLen = 255
)

// How long a final reservation stays in an engine's memory, with its idempotency key,
// before it is served from the ledger: at least the API's 24 hours during which a key is
// remembered.
const (
	DefaultRetention = 25 * time.Hour
	MinRetention     = 24 * time.Hour
)

// Status is the state of a reservation: held → confirmed | released | expired.
type Status string

// The reservation states.
const (
	StatusHeld      Status = "held"
	StatusConfirmed Status = "confirmed"
	StatusReleased  Status = "released"
	StatusExpired   Status = "expired"
)

// Valid reports whether s is one of the four states.
func (s Status) Valid() bool {
	switch s {
	case StatusHeld, StatusConfirmed, StatusReleased, StatusExpired:
		return true
	}
	return false
}

// Final reports whether no ordinary transition leaves s. An expired reservation can
// still be revived by a confirm with Revive set.
func (s Status) Final() bool { return s != StatusHeld }

// Counts reports whether units in state s count against stock as held or sold, and
// against the customer's per-SKU limit.
func (s Status) Counts() bool { return s == StatusHeld || s == StatusConfirmed }

// Reservation is a hold of Quantity units of one SKU by one customer.
type Reservation struct {
	ID          string // opaque, unique forever, sortable by creation time
	SKU         string
	CustomerID  string
	Quantity    int64
	Status      Status
	CreatedAt   time.Time
	ExpiresAt   time.Time // CreatedAt + the SKU's hold duration
	ConfirmedAt time.Time // zero unless confirmed
	ReleasedAt  time.Time // zero unless released
	OrderRef    string    // "" means none
}

// ConfirmOutcome is what confirming a reservation in state from does: the state it ends
// in, whether units must be taken again (a revive), or the error code refusing it.
// A held reservation past its deadline must be expired before this is asked.
func ConfirmOutcome(from Status, revive bool) (to Status, retake bool, code Code) {
	switch from {
	case StatusHeld:
		return StatusConfirmed, false, ""
	case StatusConfirmed:
		return StatusConfirmed, false, ""
	case StatusReleased:
		return from, false, CodeHoldReleased
	case StatusExpired:
		if revive {
			return StatusConfirmed, true, ""
		}
		return from, false, CodeHoldExpired
	}
	return from, false, CodeInternal
}

// ReleaseOutcome is what releasing a reservation in state from does.
func ReleaseOutcome(from Status) (to Status, code Code) {
	switch from {
	case StatusHeld, StatusReleased:
		return StatusReleased, ""
	case StatusConfirmed:
		return from, CodeAlreadyConfirmed
	case StatusExpired:
		return from, CodeHoldExpired
	}
	return from, CodeInternal
}

// ValidCustomerID reports whether id is 1 to 128 printable UTF-8 characters.
func ValidCustomerID(id string) bool { return printable(id, MaxCustomerIDLen) }

// ValidOrderRef reports whether ref is at most 128 printable UTF-8 characters.
func ValidOrderRef(ref string) bool { return ref == "" || printable(ref, MaxOrderRefLen) }

// ValidIdempotencyKey reports whether key is 1 to 255 printable ASCII characters.
func ValidIdempotencyKey(key string) bool {
	if len(key) == 0 || len(key) > MaxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

func printable(s string, maxChars int) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxChars {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
