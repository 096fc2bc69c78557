package revguard_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

func TestValidSKUID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"sneaker-42", true},
		{"A.b_c:d-9", true},
		{"x", true},
		{strings.Repeat("a", revguard.MaxSKUIDLen), true},
		{strings.Repeat("a", revguard.MaxSKUIDLen+1), false},
		{"", false},
		{"has space", false},
		{"slash/x", false},
		{"é", false},
		{"nul\x00", false},
		{"percent%20", false},
		{".", false},
		{"..", false},
		{"...", true},
		{".a", true},
	}
	for _, tt := range tests {
		if got := revguard.ValidSKUID(tt.id); got != tt.want {
			t.Errorf("ValidSKUID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestValidCustomerID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"c-42", true},
		{"Jürgen Müller", true},
		{"日本語", true},
		{strings.Repeat("é", revguard.MaxCustomerIDLen), true}, // 128 characters, 256 bytes
		{strings.Repeat("é", revguard.MaxCustomerIDLen+1), false},
		{"", false},
		{"tab\there", false},
		{"newline\n", false},
		{"\xff\xfe", false}, // not UTF-8
		{"bell\a", false},
	}
	for _, tt := range tests {
		if got := revguard.ValidCustomerID(tt.id); got != tt.want {
			t.Errorf("ValidCustomerID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestValidIdempotencyKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"key-1", true},
		{" ~", true}, // the ends of printable ASCII
		{strings.Repeat("k", revguard.MaxIdempotencyKeyLen), true},
		{strings.Repeat("k", revguard.MaxIdempotencyKeyLen+1), false},
		{"", false},
		{"del\x7f", false},
		{"ctl\x1f", false},
		{"é", false}, // printable, but not ASCII
	}
	for _, tt := range tests {
		if got := revguard.ValidIdempotencyKey(tt.key); got != tt.want {
			t.Errorf("ValidIdempotencyKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestConfirmOutcome(t *testing.T) {
	tests := []struct {
		from       revguard.Status
		revive     bool
		wantTo     revguard.Status
		wantRetake bool
		wantCode   revguard.Code
	}{
		{revguard.StatusHeld, false, revguard.StatusConfirmed, false, ""},
		{revguard.StatusHeld, true, revguard.StatusConfirmed, false, ""},
		{revguard.StatusConfirmed, false, revguard.StatusConfirmed, false, ""},
		{revguard.StatusConfirmed, true, revguard.StatusConfirmed, false, ""},
		{revguard.StatusReleased, false, revguard.StatusReleased, false, revguard.CodeHoldReleased},
		{revguard.StatusReleased, true, revguard.StatusReleased, false, revguard.CodeHoldReleased},
		{revguard.StatusExpired, false, revguard.StatusExpired, false, revguard.CodeHoldExpired},
		{revguard.StatusExpired, true, revguard.StatusConfirmed, true, ""},
		{"bogus", false, "bogus", false, revguard.CodeInternal},
	}
	for _, tt := range tests {
		to, retake, code := revguard.ConfirmOutcome(tt.from, tt.revive)
		if to != tt.wantTo || retake != tt.wantRetake || code != tt.wantCode {
			t.Errorf("ConfirmOutcome(%q, %v) = %q, %v, %q; want %q, %v, %q",
				tt.from, tt.revive, to, retake, code, tt.wantTo, tt.wantRetake, tt.wantCode)
		}
	}
}

func TestReleaseOutcome(t *testing.T) {
	tests := []struct {
		from     revguard.Status
		wantTo   revguard.Status
		wantCode revguard.Code
	}{
		{revguard.StatusHeld, revguard.StatusReleased, ""},
		{revguard.StatusReleased, revguard.StatusReleased, ""},
		{revguard.StatusConfirmed, revguard.StatusConfirmed, revguard.CodeAlreadyConfirmed},
		{revguard.StatusExpired, revguard.StatusExpired, revguard.CodeHoldExpired},
		{"bogus", "bogus", revguard.CodeInternal},
	}
	for _, tt := range tests {
		to, code := revguard.ReleaseOutcome(tt.from)
		if to != tt.wantTo || code != tt.wantCode {
			t.Errorf("ReleaseOutcome(%q) = %q, %q; want %q, %q", tt.from, to, code, tt.wantTo, tt.wantCode)
		}
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		s                    revguard.Status
		valid, final, counts bool
	}{
		{revguard.StatusHeld, true, false, true},
		{revguard.StatusConfirmed, true, true, true},
		{revguard.StatusReleased, true, true, false},
		{revguard.StatusExpired, true, true, false},
		{"", false, true, false},
		{"HELD", false, true, false},
	}
	for _, tt := range tests {
		if v, f, c := tt.s.Valid(), tt.s.Final(), tt.s.Counts(); v != tt.valid || f != tt.final || c != tt.counts {
			t.Errorf("%q: Valid, Final, Counts = %v, %v, %v; want %v, %v, %v", tt.s, v, f, c, tt.valid, tt.final, tt.counts)
		}
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    revguard.Rate
		wantErr bool
	}{
		{"off", revguard.Rate{}, false},
		{"10/s", revguard.Rate{N: 10, Per: time.Second}, false},
		{"100/m", revguard.Rate{N: 100, Per: time.Minute}, false},
		{"1/s", revguard.Rate{N: 1, Per: time.Second}, false},
		{"0/s", revguard.Rate{}, true},
		{"-1/s", revguard.Rate{}, true},
		{"+5/s", revguard.Rate{}, true},
		{"5/h", revguard.Rate{}, true},
		{"5", revguard.Rate{}, true},
		{"/s", revguard.Rate{}, true},
		{"5/", revguard.Rate{}, true},
		{"Off", revguard.Rate{}, true},
		{"", revguard.Rate{}, true},
		{"99999999999999999999/s", revguard.Rate{}, true},
		{"100000000/m", revguard.Rate{N: revguard.MaxRateN, Per: time.Minute}, false},
		{"100000001/s", revguard.Rate{}, true}, // out of what the Redis limiter counts exactly
		{"200000000/m", revguard.Rate{}, true},
	}
	for _, tt := range tests {
		got, err := revguard.ParseRate(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			continue
		}
		if err == nil {
			if back, err := revguard.ParseRate(got.String()); err != nil || back != got {
				t.Errorf("ParseRate(%q.String() = %q) = %+v, %v; want %+v", tt.in, got.String(), back, err, got)
			}
			if got.Off() != (tt.in == "off") {
				t.Errorf("ParseRate(%q).Off() = %v", tt.in, got.Off())
			}
		}
	}
}

func TestSKUUpdateValidate(t *testing.T) {
	valid := revguard.SKUUpdate{Stock: 10, PerCustomerLimit: 1, HoldSeconds: 600}
	tests := []struct {
		name string
		edit func(u *revguard.SKUUpdate)
		ok   bool
	}{
		{"OK", func(u *revguard.SKUUpdate) {}, true},
		{"OK_StockZero", func(u *revguard.SKUUpdate) { u.Stock = 0 }, true},
		{"OK_StockMax", func(u *revguard.SKUUpdate) { u.Stock = revguard.MaxStock }, true},
		{"OK_LimitMax", func(u *revguard.SKUUpdate) { u.PerCustomerLimit = revguard.MaxPerCustomerLimit }, true},
		{"OK_HoldMin", func(u *revguard.SKUUpdate) { u.HoldSeconds = 1 }, true},
		{"OK_HoldMax", func(u *revguard.SKUUpdate) { u.HoldSeconds = revguard.MaxHoldSeconds }, true},
		{"ErrStockNegative", func(u *revguard.SKUUpdate) { u.Stock = -1 }, false},
		{"ErrStockTooLarge", func(u *revguard.SKUUpdate) { u.Stock = revguard.MaxStock + 1 }, false},
		{"ErrLimitZero", func(u *revguard.SKUUpdate) { u.PerCustomerLimit = 0 }, false},
		{"ErrLimitTooLarge", func(u *revguard.SKUUpdate) { u.PerCustomerLimit = revguard.MaxPerCustomerLimit + 1 }, false},
		{"ErrHoldZero", func(u *revguard.SKUUpdate) { u.HoldSeconds = 0 }, false},
		{"ErrHoldTooLong", func(u *revguard.SKUUpdate) { u.HoldSeconds = revguard.MaxHoldSeconds + 1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := valid
			tt.edit(&u)
			err := u.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate(%+v) = %v, want nil", u, err)
			}
			if !tt.ok && revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("Validate(%+v) = %v, want code %s", u, err, revguard.CodeInvalidRequest)
			}
		})
	}
}

func TestSKUUpdateNormalize(t *testing.T) {
	u := revguard.SKUUpdate{Stock: 5}
	u.Normalize()
	if u.PerCustomerLimit != revguard.DefaultPerCustomerLimit || u.HoldSeconds != revguard.DefaultHoldSeconds {
		t.Fatalf("Normalize: got %+v, want the defaults", u)
	}
	u = revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 3, HoldSeconds: 30}
	u.Normalize()
	if u.PerCustomerLimit != 3 || u.HoldSeconds != 30 {
		t.Fatalf("Normalize changed set fields: %+v", u)
	}
}

func TestSKUOpen(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		opensAt, now time.Time
		want         bool
	}{
		{time.Time{}, at, true},
		{at, at.Add(-time.Nanosecond), false},
		{at, at, true},
		{at, at.Add(time.Second), true},
	}
	for _, tt := range tests {
		if got := (revguard.SKU{OpensAt: tt.opensAt}).Open(tt.now); got != tt.want {
			t.Errorf("SKU{OpensAt: %v}.Open(%v) = %v, want %v", tt.opensAt, tt.now, got, tt.want)
		}
	}
}

func TestErrorCode(t *testing.T) {
	soldOut := revguard.Errorf(revguard.CodeSoldOut, "only %d left", 0)
	tests := []struct {
		name       string
		err        error
		wantCode   revguard.Code
		wantDetail string
	}{
		{"Nil", nil, "", ""},
		{"Domain", soldOut, revguard.CodeSoldOut, "only 0 left"},
		{"Wrapped", fmt.Errorf("reserve: %w", soldOut), revguard.CodeSoldOut, "only 0 left"},
		{"Joined", errors.Join(errors.New("other"), soldOut), revguard.CodeSoldOut, "only 0 left"},
		{"Plain", errors.New("disk on fire"), revguard.CodeInternal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := revguard.ErrorCode(tt.err); got != tt.wantCode {
				t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.wantCode)
			}
			if got := revguard.ErrorDetail(tt.err); got != tt.wantDetail {
				t.Errorf("ErrorDetail(%v) = %q, want %q", tt.err, got, tt.wantDetail)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *revguard.Error
		want string
	}{
		{&revguard.Error{Code: revguard.CodeSoldOut}, "revguard: sold_out"},
		{revguard.Errorf(revguard.CodeSoldOut, "sku %s", "x"), "revguard: sold_out: sku x"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestCodesUnique(t *testing.T) {
	seen := make(map[revguard.Code]bool)
	for _, c := range revguard.Codes {
		if c == "" || seen[c] {
			t.Errorf("code %q empty or listed twice", c)
		}
		seen[c] = true
	}
}
