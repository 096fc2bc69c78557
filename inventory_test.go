package revguard_test

import (
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

func TestReserveRequestCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		req  revguard.ReserveRequest
		want revguard.Code
	}{
		{"OK", revguard.ReserveRequest{SKU: "s", CustomerID: "c", Quantity: 1}, ""},
		{"OK_Key", revguard.ReserveRequest{SKU: "s", CustomerID: "c", Quantity: 2, IdempotencyKey: "k-1"}, ""},
		{"ErrQuantity", revguard.ReserveRequest{SKU: "s", CustomerID: "c", Quantity: 0}, revguard.CodeInvalidRequest},
		{"ErrNoCustomer", revguard.ReserveRequest{SKU: "s", Quantity: 1}, revguard.CodeInvalidRequest},
		{"ErrLongCustomer", revguard.ReserveRequest{SKU: "s", CustomerID: strings.Repeat("c", 513), Quantity: 1}, revguard.CodeInvalidRequest},
		{"ErrKey", revguard.ReserveRequest{SKU: "s", CustomerID: "c", Quantity: 1, IdempotencyKey: "k\n"}, revguard.CodeInvalidRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := revguard.ErrorCode(tt.req.Check()); got != tt.want {
				t.Fatalf("Check(%+v) = %q, want %q", tt.req, got, tt.want)
			}
		})
	}
}

func TestCheckPut(t *testing.T) {
	ok := revguard.SKUUpdate{Stock: 1, PerCustomerLimit: 1, HoldSeconds: 1}
	at := func(t time.Time) revguard.SKUUpdate { u := ok; u.OpensAt = t; return u }
	for _, tt := range []struct {
		name string
		id   string
		u    revguard.SKUUpdate
		want revguard.Code
	}{
		{"OK", "s-1", ok, ""},
		{"OK_Opens", "s-1", at(time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)), ""},
		{"ErrID", "s/1", ok, revguard.CodeInvalidSKU},
		{"ErrStock", "s-1", revguard.SKUUpdate{Stock: -1, PerCustomerLimit: 1, HoldSeconds: 1}, revguard.CodeInvalidRequest},
		{"ErrOpensBefore1970", "s-1", at(time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)), revguard.CodeInvalidRequest},
		{"ErrOpensAfter2262", "s-1", at(time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC)), revguard.CodeInvalidRequest},
		// The edges of what Unix nanoseconds hold; 0 means no opening time.
		{"ErrOpensAtEpoch", "s-1", at(time.Unix(0, 0)), revguard.CodeInvalidRequest},
		{"OK_OpensAfterEpoch", "s-1", at(time.Unix(0, 1)), ""},
		{"OK_OpensAtLast", "s-1", at(time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC)), ""},
		{"ErrOpensAfterLast", "s-1", at(time.Date(2262, 4, 11, 23, 47, 16, 854775808, time.UTC)), revguard.CodeInvalidRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := revguard.ErrorCode(revguard.CheckPut(tt.id, tt.u)); got != tt.want {
				t.Fatalf("CheckPut(%q, %+v) = %q, want %q", tt.id, tt.u, got, tt.want)
			}
		})
	}
}
