package mock

import (
	"context"

	"github.com/revenueguard/revguard"
)

var _ revguard.WaitingRoom = (*WaitingRoom)(nil)

// WaitingRoom is a revguard.WaitingRoom whose methods call the matching Fn field.
type WaitingRoom struct {
	PutRoomFn    func(ctx context.Context, sku string, s revguard.RoomSettings) (revguard.Room, bool, error)
	DeleteRoomFn func(ctx context.Context, sku string) error
	FindRoomFn   func(ctx context.Context, sku string) (revguard.Room, error)
	JoinFn       func(ctx context.Context, sku, customerID string) (revguard.Place, bool, error)
	FindPlaceFn  func(ctx context.Context, sku, customerID string) (revguard.Place, error)
	ClaimFn      func(ctx context.Context, sku, customerID string) (bool, error)
	SettleFn     func(ctx context.Context, sku, customerID string, used bool) error
	AdvanceFn    func(ctx context.Context, sku string) error
}

// PutRoom calls PutRoomFn.
func (m *WaitingRoom) PutRoom(ctx context.Context, sku string, s revguard.RoomSettings) (revguard.Room, bool, error) {
	if m.PutRoomFn == nil {
		unset("WaitingRoom.PutRoomFn")
	}
	return m.PutRoomFn(ctx, sku, s)
}

// DeleteRoom calls DeleteRoomFn.
func (m *WaitingRoom) DeleteRoom(ctx context.Context, sku string) error {
	if m.DeleteRoomFn == nil {
		unset("WaitingRoom.DeleteRoomFn")
	}
	return m.DeleteRoomFn(ctx, sku)
}

// FindRoom calls FindRoomFn.
func (m *WaitingRoom) FindRoom(ctx context.Context, sku string) (revguard.Room, error) {
	if m.FindRoomFn == nil {
		unset("WaitingRoom.FindRoomFn")
	}
	return m.FindRoomFn(ctx, sku)
}

// Join calls JoinFn.
func (m *WaitingRoom) Join(ctx context.Context, sku, customerID string) (revguard.Place, bool, error) {
	if m.JoinFn == nil {
		unset("WaitingRoom.JoinFn")
	}
	return m.JoinFn(ctx, sku, customerID)
}

// FindPlace calls FindPlaceFn.
func (m *WaitingRoom) FindPlace(ctx context.Context, sku, customerID string) (revguard.Place, error) {
	if m.FindPlaceFn == nil {
		unset("WaitingRoom.FindPlaceFn")
	}
	return m.FindPlaceFn(ctx, sku, customerID)
}

// Claim calls ClaimFn.
func (m *WaitingRoom) Claim(ctx context.Context, sku, customerID string) (bool, error) {
	if m.ClaimFn == nil {
		unset("WaitingRoom.ClaimFn")
	}
	return m.ClaimFn(ctx, sku, customerID)
}

// Settle calls SettleFn.
func (m *WaitingRoom) Settle(ctx context.Context, sku, customerID string, used bool) error {
	if m.SettleFn == nil {
		unset("WaitingRoom.SettleFn")
	}
	return m.SettleFn(ctx, sku, customerID, used)
}

// Advance calls AdvanceFn.
func (m *WaitingRoom) Advance(ctx context.Context, sku string) error {
	if m.AdvanceFn == nil {
		unset("WaitingRoom.AdvanceFn")
	}
	return m.AdvanceFn(ctx, sku)
}
