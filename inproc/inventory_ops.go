package inproc

import (
	"context"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
)

// PutSKU implements revguard.Inventory. Besides the rule of the interface it refuses,
// with CodeInvalidSKU or CodeInvalidRequest, what the gateway never sends (a bad id,
// settings out of range, an opens_at outside the years 1970 to 2262): the engine
// must not store what it cannot journal and read back exactly.
func (inv *Inventory) PutSKU(ctx context.Context, id string, u revguard.SKUUpdate) (revguard.SKU, bool, error) {
	if err := inv.writable(ctx); err != nil {
		return revguard.SKU{}, false, err
	}
	if err := revguard.CheckPut(id, u); err != nil {
		return revguard.SKU{}, false, err
	}
	s := inv.lookup(id)
	if s == nil {
		// Not visible as a SKU (exists is false) until its creation is applied.
		ns := newSKU(strings.Clone(id))
		v, _ := inv.skus.LoadOrStore(ns.id, ns)
		s = v.(*sku)
	}
	s.mu.Lock()
	sv, created, err := inv.putLocked(s, u)
	seq := s.lastSeq.Load()
	s.mu.Unlock()
	if err = inv.settle(ctx, seq, err); err != nil {
		return revguard.SKU{}, false, err
	}
	return sv, created, nil
}

func (inv *Inventory) putLocked(s *sku, u revguard.SKUUpdate) (revguard.SKU, bool, error) {
	now := inv.clock(s)
	created := !s.exists.Load()
	if !created {
		if err := inv.expireDue(s, now); err != nil {
			return revguard.SKU{}, false, err
		}
		if committed := s.held + s.sold; u.Stock < committed {
			return revguard.SKU{}, false, revguard.Errorf(revguard.CodeStockBelowCommitted,
				"stock %d is below the %d units held or sold", u.Stock, committed)
		}
	}
	ev := revguard.Event{
		Type:             revguard.EventSKUPut,
		Time:             unixTime(now),
		SKU:              s.id,
		Stock:            u.Stock,
		PerCustomerLimit: u.PerCustomerLimit,
		HoldSeconds:      u.HoldSeconds,
		OpensAt:          u.OpensAt,
	}
	seq, err := inv.append(&ev)
	if err != nil {
		return revguard.SKU{}, false, err
	}
	inv.applyPut(s, u.Stock, u.PerCustomerLimit, u.HoldSeconds, unixNanos(u.OpensAt))
	inv.publish(s, seq)
	return s.view(), created, nil
}

// FindSKU implements revguard.Inventory.
func (inv *Inventory) FindSKU(ctx context.Context, id string) (revguard.SKU, error) {
	s := inv.lookup(id)
	if s == nil || !s.exists.Load() {
		return revguard.SKU{}, errSKUNotFound(id)
	}
	s.mu.Lock()
	err := inv.expireDue(s, inv.clock(s))
	sv := s.view()
	seq := s.lastSeq.Load()
	s.mu.Unlock()
	if err = inv.settle(ctx, seq, err); err != nil {
		return revguard.SKU{}, err
	}
	return sv, nil
}

// Availability implements revguard.Inventory. It takes no lock unless a hold of the
// SKU is due (then it expires it first; see Inventory.Now for the system clock), and
// allocates nothing.
func (inv *Inventory) Availability(ctx context.Context, id string) (revguard.Availability, error) {
	return inv.availability(ctx, id, -1)
}

// PrecheckReserve implements revguard.ReservePrechecker: Availability, without the
// wait for durability when the view lets a reservation of quantity units through.
//
// On a busy SKU some change is nearly always on its way to the disk, so waiting here
// would make every reservation wait for two group commits, the one before it and its
// own.
func (inv *Inventory) PrecheckReserve(ctx context.Context, id string, quantity int64) (revguard.Availability, error) {
	return inv.availability(ctx, id, max(quantity, 0))
}

// availability returns the public view of the SKU id, once the changes it shows are
// durable; with quantity >= 0, without that wait when the sale is open and quantity
// units are available.
func (inv *Inventory) availability(ctx context.Context, id string, quantity int64) (revguard.Availability, error) {
	s := inv.lookup(id)
	if s == nil || !s.exists.Load() {
		return revguard.Availability{}, errSKUNotFound(id)
	}
	if !inv.settled(s.nextExpiry.Load(), 0) {
		s.mu.Lock()
		err := inv.expireDue(s, inv.clock(s))
		s.mu.Unlock()
		if err != nil {
			return revguard.Availability{}, err
		}
	}
	opens := s.opensAt.Load()
	avail := s.avail.Load()
	av := revguard.Availability{
		SKU:       s.id,
		Available: avail,
		SoldOut:   avail <= 0,
		OpensAt:   unixTime(opens),
	}
	if quantity < 0 || avail < quantity || opens != 0 && inv.now() < opens {
		if err := inv.gate(ctx, s); err != nil {
			return revguard.Availability{}, err
		}
	}
	return av, nil
}

// findRes returns the reservation id, or nil when the id is malformed or unknown.
func (inv *Inventory) findRes(id string) *reservation {
	rid, ok := parseID(id)
	if !ok {
		return nil
	}
	return inv.res.load(rid)
}

func errResNotFound(id string) error {
	return revguard.Errorf(revguard.CodeReservationNotFound, "no reservation %q", id)
}

// FindReservation implements revguard.Inventory.
func (inv *Inventory) FindReservation(ctx context.Context, id string) (revguard.Reservation, error) {
	r := inv.findRes(id)
	if r == nil {
		return revguard.Reservation{}, errResNotFound(id)
	}
	s := r.sku
	s.mu.Lock()
	if r.state == 0 || r.state == stEvicted { // being created, or gone from memory: not here
		s.mu.Unlock()
		return revguard.Reservation{}, errResNotFound(id)
	}
	err := inv.expireDue(s, inv.clock(s))
	rv := r.view()
	seq := s.lastSeq.Load()
	s.mu.Unlock()
	if err = inv.settle(ctx, seq, err); err != nil {
		return revguard.Reservation{}, err
	}
	return rv, nil
}

// Confirm implements revguard.Inventory.
func (inv *Inventory) Confirm(ctx context.Context, req revguard.ConfirmRequest) (revguard.Reservation, error) {
	if err := inv.writable(ctx); err != nil {
		return revguard.Reservation{}, err
	}
	if !revguard.ValidOrderRef(req.OrderRef) {
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeInvalidRequest, "invalid order_ref")
	}
	r := inv.findRes(req.ID)
	if r == nil || r.customer != req.CustomerID {
		return revguard.Reservation{}, errResNotFound(req.ID)
	}
	s := r.sku
	s.mu.Lock()
	rv, err := inv.confirmLocked(s, r, req)
	seq := s.lastSeq.Load()
	s.mu.Unlock()
	if err = inv.settle(ctx, seq, err); err != nil {
		return revguard.Reservation{}, err
	}
	return rv, nil
}

func (inv *Inventory) confirmLocked(s *sku, r *reservation, req revguard.ConfirmRequest) (revguard.Reservation, error) {
	if r.state == 0 || r.state == stEvicted { // being created, or gone from memory: not here
		return revguard.Reservation{}, errResNotFound(req.ID)
	}
	now := inv.clock(s)
	if err := inv.expireDue(s, now); err != nil {
		return revguard.Reservation{}, err
	}
	_, retake, code := revguard.ConfirmOutcome(r.state.status(), req.Revive)
	switch {
	case code == revguard.CodeHoldReleased:
		return revguard.Reservation{}, revguard.Errorf(code, "the reservation was released")
	case code == revguard.CodeHoldExpired:
		return revguard.Reservation{}, revguard.Errorf(code, "the hold expired at %s",
			unixTime(r.expiresAt).Format(time.RFC3339Nano))
	case code != "":
		return revguard.Reservation{}, revguard.Errorf(code, "reservation in an unknown state")
	case r.state == stConfirmed:
		return r.view(), nil // confirming again changes nothing
	}
	q := int64(r.qty)
	if retake {
		if s.available() < q {
			return revguard.Reservation{}, revguard.Errorf(revguard.CodeSoldOut, "the units of the expired hold are no longer available")
		}
		if owned := s.owned(r.customer); q > int64(s.limit)-owned {
			return revguard.Reservation{}, revguard.Errorf(revguard.CodeLimitExceeded,
				"the limit is %d units per customer; %d already held or bought", s.limit, owned)
		}
	}
	ev := revguard.Event{
		Type:          revguard.EventConfirmed,
		Time:          unixTime(now),
		SKU:           s.id,
		ReservationID: r.id.String(),
		CustomerID:    r.customer,
		Quantity:      q,
		OrderRef:      req.OrderRef,
		Revived:       retake,
	}
	seq, err := inv.append(&ev)
	if err != nil {
		return revguard.Reservation{}, err
	}
	inv.applyConfirm(s, r, seq, now, req.OrderRef, retake)
	inv.publish(s, seq)
	return r.view(), nil
}

// Release implements revguard.Inventory.
func (inv *Inventory) Release(ctx context.Context, id, customerID string) (revguard.Reservation, error) {
	if err := inv.writable(ctx); err != nil {
		return revguard.Reservation{}, err
	}
	r := inv.findRes(id)
	if r == nil || (customerID != "" && r.customer != customerID) {
		return revguard.Reservation{}, errResNotFound(id)
	}
	s := r.sku
	s.mu.Lock()
	rv, err := inv.releaseLocked(s, r)
	seq := s.lastSeq.Load()
	s.mu.Unlock()
	if err = inv.settle(ctx, seq, err); err != nil {
		return revguard.Reservation{}, err
	}
	return rv, nil
}

func (inv *Inventory) releaseLocked(s *sku, r *reservation) (revguard.Reservation, error) {
	if r.state == 0 || r.state == stEvicted { // being created, or gone from memory: not here
		return revguard.Reservation{}, errResNotFound(r.id.String())
	}
	now := inv.clock(s)
	if err := inv.expireDue(s, now); err != nil {
		return revguard.Reservation{}, err
	}
	_, code := revguard.ReleaseOutcome(r.state.status())
	switch {
	case code == revguard.CodeAlreadyConfirmed:
		return revguard.Reservation{}, revguard.Errorf(code, "the reservation is confirmed")
	case code == revguard.CodeHoldExpired:
		return revguard.Reservation{}, revguard.Errorf(code, "the hold expired at %s",
			unixTime(r.expiresAt).Format(time.RFC3339Nano))
	case code != "":
		return revguard.Reservation{}, revguard.Errorf(code, "reservation in an unknown state")
	case r.state == stReleased:
		return r.view(), nil // releasing again changes nothing
	}
	ev := revguard.Event{
		Type:          revguard.EventReleased,
		Time:          unixTime(now),
		SKU:           s.id,
		ReservationID: r.id.String(),
		CustomerID:    r.customer,
		Quantity:      int64(r.qty),
	}
	seq, err := inv.append(&ev)
	if err != nil {
		return revguard.Reservation{}, err
	}
	inv.applyRelease(s, r, seq, now)
	inv.publish(s, seq)
	return r.view(), nil
}
