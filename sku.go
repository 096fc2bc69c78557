package revguard

import (
	"math"
	"time"
)

// Limits and defaults of a SKU's settings (docs/api.md, PUT /v1/skus/{sku}).
const (
	MaxSKUIDLen             = 128
	MaxStock                = 1_000_000_000
	DefaultPerCustomerLimit = 1
	MaxPerCustomerLimit     = 1_000_000
	DefaultHoldSeconds      = 600
	MaxHoldSeconds          = 86_400
)

// SKU is the full, exact state of one product on sale.
//
// Invariant: Available + Held + Sold == Stock, each non-negative.
type SKU struct {
	ID               string
	Stock            int64
	Available        int64
	Held             int64
	Sold             int64
	PerCustomerLimit int64
	HoldSeconds      int64
	OpensAt          time.Time // zero: open at once
}

// Open reports whether the sale of s is open at now.
func (s SKU) Open(now time.Time) bool { return s.OpensAt.IsZero() || !now.Before(s.OpensAt) }

// Closed reports whether s has nothing available and nothing held: its sale is over
// unless units come back, and its waiting room is closed (Room.SoldOut).
func (s SKU) Closed() bool { return s.Available == 0 && s.Held == 0 }

// HoldDuration is how long a hold on s lasts.
func (s SKU) HoldDuration() time.Duration { return time.Duration(s.HoldSeconds) * time.Second }

// SKUUpdate is the complete new configuration of a SKU (PUT replaces it whole). Zero
// PerCustomerLimit and HoldSeconds mean their defaults; call Normalize then Validate.
type SKUUpdate struct {
	Stock            int64
	PerCustomerLimit int64
	HoldSeconds      int64
	OpensAt          time.Time // zero: open at once
}

// Normalize fills in the defaults of zero fields.
func (u *SKUUpdate) Normalize() {
	if u.PerCustomerLimit == 0 {
		u.PerCustomerLimit = DefaultPerCustomerLimit
	}
	if u.HoldSeconds == 0 {
		u.HoldSeconds = DefaultHoldSeconds
	}
}

// Validate checks the ranges of docs/api.md; it fails with CodeInvalidRequest.
func (u SKUUpdate) Validate() error {
	switch {
	case u.Stock < 0 || u.Stock > MaxStock:
		return Errorf(CodeInvalidRequest, "stock must be between 0 and %d", MaxStock)
	case u.PerCustomerLimit < 1 || u.PerCustomerLimit > MaxPerCustomerLimit:
		return Errorf(CodeInvalidRequest, "per_customer_limit must be between 1 and %d", MaxPerCustomerLimit)
	case u.HoldSeconds < 1 || u.HoldSeconds > MaxHoldSeconds:
		return Errorf(CodeInvalidRequest, "hold_seconds must be between 1 and %d", MaxHoldSeconds)
	}
	return nil
}

// CheckPut refuses, with CodeInvalidSKU or CodeInvalidRequest, what an Inventory must
// not store even though the gateway never sends it: an invalid id, settings out of
// range (see Validate), an opens_at outside the years 1970 to 2262, which Unix
// nanoseconds (the engines' unit of time) cannot hold.
func CheckPut(id string, u SKUUpdate) error {
	if !ValidSKUID(id) {
		return Errorf(CodeInvalidSKU, "invalid SKU id")
	}
	if err := u.Validate(); err != nil {
		return err
	}
	if !u.OpensAt.IsZero() && (u.OpensAt.Before(time.Unix(0, 1)) || u.OpensAt.After(time.Unix(0, math.MaxInt64))) {
		return Errorf(CodeInvalidRequest, OpensAtRangeDetail)
	}
	return nil
}

// OpensAtRangeDetail is the detail of the CodeInvalidRequest refusal of an opens_at that
// Unix nanoseconds cannot hold (0 means no opening time, so the epoch itself is out).
const OpensAtRangeDetail = "opens_at out of range: it must lie after 1970-01-01T00:00:00Z and before 2262-04-11T23:47:17Z"

// Availability is the public, cacheable view of a SKU. It may be up to one second stale.
type Availability struct {
	SKU       string
	Available int64
	SoldOut   bool
	OpensAt   time.Time // zero: open at once
}

// ValidSKUID reports whether id is 1 to 128 characters from [A-Za-z0-9._:-], other than
// "." and ".." (dot segments, which a client's URL handling removes from a path).
func ValidSKUID(id string) bool {
	if len(id) == 0 || len(id) > MaxSKUIDLen || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
