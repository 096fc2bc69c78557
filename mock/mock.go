// Package mock holds function-field mocks of the root interfaces of package revguard.
//
// They exist only to inject failures into httpapi's handlers (a store that errors, a
// verifier that panics); every other test uses the real in-process implementations and
// fakes such as turnstiletest. Each mock calls its function field; a call to a field
// left nil panics with a message naming it, so a test that reaches an unexpected method
// fails loudly.
package mock

import (
	"context"
	"time"

	"github.com/revenueguard/revguard"
)

var (
	_ revguard.Inventory   = (*Inventory)(nil)
	_ revguard.Ledger      = (*Ledger)(nil)
	_ revguard.Sessions    = (*Sessions)(nil)
	_ revguard.BotChecker  = (*BotChecker)(nil)
	_ revguard.RateLimiter = (*RateLimiter)(nil)
)

func unset(name string) { panic("mock: " + name + " not set") }

// Inventory is a revguard.Inventory whose methods call the matching Fn field.
type Inventory struct {
	PutSKUFn          func(ctx context.Context, id string, u revguard.SKUUpdate) (revguard.SKU, bool, error)
	FindSKUFn         func(ctx context.Context, id string) (revguard.SKU, error)
	AvailabilityFn    func(ctx context.Context, id string) (revguard.Availability, error)
	ReserveFn         func(ctx context.Context, r revguard.ReserveRequest) (revguard.Reservation, bool, error)
	FindIdempotentFn  func(ctx context.Context, r revguard.ReserveRequest) (revguard.Reservation, bool, error)
	FindReservationFn func(ctx context.Context, id string) (revguard.Reservation, error)
	ConfirmFn         func(ctx context.Context, r revguard.ConfirmRequest) (revguard.Reservation, error)
	ReleaseFn         func(ctx context.Context, id, customerID string) (revguard.Reservation, error)
}

// PutSKU calls PutSKUFn.
func (m *Inventory) PutSKU(ctx context.Context, id string, u revguard.SKUUpdate) (revguard.SKU, bool, error) {
	if m.PutSKUFn == nil {
		unset("Inventory.PutSKUFn")
	}
	return m.PutSKUFn(ctx, id, u)
}

// FindSKU calls FindSKUFn.
func (m *Inventory) FindSKU(ctx context.Context, id string) (revguard.SKU, error) {
	if m.FindSKUFn == nil {
		unset("Inventory.FindSKUFn")
	}
	return m.FindSKUFn(ctx, id)
}

// Availability calls AvailabilityFn.
func (m *Inventory) Availability(ctx context.Context, id string) (revguard.Availability, error) {
	if m.AvailabilityFn == nil {
		unset("Inventory.AvailabilityFn")
	}
	return m.AvailabilityFn(ctx, id)
}

// Reserve calls ReserveFn.
func (m *Inventory) Reserve(ctx context.Context, r revguard.ReserveRequest) (revguard.Reservation, bool, error) {
	if m.ReserveFn == nil {
		unset("Inventory.ReserveFn")
	}
	return m.ReserveFn(ctx, r)
}

// FindIdempotent calls FindIdempotentFn.
func (m *Inventory) FindIdempotent(ctx context.Context, r revguard.ReserveRequest) (revguard.Reservation, bool, error) {
	if m.FindIdempotentFn == nil {
		unset("Inventory.FindIdempotentFn")
	}
	return m.FindIdempotentFn(ctx, r)
}

// FindReservation calls FindReservationFn.
func (m *Inventory) FindReservation(ctx context.Context, id string) (revguard.Reservation, error) {
	if m.FindReservationFn == nil {
		unset("Inventory.FindReservationFn")
	}
	return m.FindReservationFn(ctx, id)
}

// Confirm calls ConfirmFn.
func (m *Inventory) Confirm(ctx context.Context, r revguard.ConfirmRequest) (revguard.Reservation, error) {
	if m.ConfirmFn == nil {
		unset("Inventory.ConfirmFn")
	}
	return m.ConfirmFn(ctx, r)
}

// Release calls ReleaseFn.
func (m *Inventory) Release(ctx context.Context, id, customerID string) (revguard.Reservation, error) {
	if m.ReleaseFn == nil {
		unset("Inventory.ReleaseFn")
	}
	return m.ReleaseFn(ctx, id, customerID)
}

// Ledger is a revguard.Ledger whose methods call the matching Fn field.
type Ledger struct {
	ApplyEventsFn func(ctx context.Context, events []revguard.Event) error
	LastAppliedFn func(ctx context.Context) (uint64, error)
	FindOrdersFn  func(ctx context.Context, f revguard.OrderFilter) (revguard.OrderPage, error)
}

// ApplyEvents calls ApplyEventsFn.
func (m *Ledger) ApplyEvents(ctx context.Context, events []revguard.Event) error {
	if m.ApplyEventsFn == nil {
		unset("Ledger.ApplyEventsFn")
	}
	return m.ApplyEventsFn(ctx, events)
}

// LastApplied calls LastAppliedFn.
func (m *Ledger) LastApplied(ctx context.Context) (uint64, error) {
	if m.LastAppliedFn == nil {
		unset("Ledger.LastAppliedFn")
	}
	return m.LastAppliedFn(ctx)
}

// FindOrders calls FindOrdersFn.
func (m *Ledger) FindOrders(ctx context.Context, f revguard.OrderFilter) (revguard.OrderPage, error) {
	if m.FindOrdersFn == nil {
		unset("Ledger.FindOrdersFn")
	}
	return m.FindOrdersFn(ctx, f)
}

// Sessions is a revguard.Sessions whose methods call the matching Fn field.
type Sessions struct {
	CreateSessionFn func(ctx context.Context, customerID string, ttl time.Duration) (string, revguard.Session, error)
	FindSessionFn   func(ctx context.Context, token string) (revguard.Session, error)
	DeleteSessionFn func(ctx context.Context, token string) error
}

// CreateSession calls CreateSessionFn.
func (m *Sessions) CreateSession(ctx context.Context, customerID string, ttl time.Duration) (string, revguard.Session, error) {
	if m.CreateSessionFn == nil {
		unset("Sessions.CreateSessionFn")
	}
	return m.CreateSessionFn(ctx, customerID, ttl)
}

// FindSession calls FindSessionFn.
func (m *Sessions) FindSession(ctx context.Context, token string) (revguard.Session, error) {
	if m.FindSessionFn == nil {
		unset("Sessions.FindSessionFn")
	}
	return m.FindSessionFn(ctx, token)
}

// DeleteSession calls DeleteSessionFn.
func (m *Sessions) DeleteSession(ctx context.Context, token string) error {
	if m.DeleteSessionFn == nil {
		unset("Sessions.DeleteSessionFn")
	}
	return m.DeleteSessionFn(ctx, token)
}

// BotChecker is a revguard.BotChecker whose Verify calls VerifyFn.
type BotChecker struct {
	VerifyFn func(ctx context.Context, token, remoteIP string) error
}

// Verify calls VerifyFn.
func (m *BotChecker) Verify(ctx context.Context, token, remoteIP string) error {
	if m.VerifyFn == nil {
		unset("BotChecker.VerifyFn")
	}
	return m.VerifyFn(ctx, token, remoteIP)
}

// RateLimiter is a revguard.RateLimiter whose Allow calls AllowFn.
type RateLimiter struct {
	AllowFn func(ctx context.Context, key string) (bool, time.Duration, error)
}

// Allow calls AllowFn.
func (m *RateLimiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	if m.AllowFn == nil {
		unset("RateLimiter.AllowFn")
	}
	return m.AllowFn(ctx, key)
}
