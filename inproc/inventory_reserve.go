package inproc

import (
	"context"
	"time"

	"github.com/revenueguard/revguard"
)

// pendingReserve marks an idempotency key whose first Reserve is in flight. Later
// calls with the key wait for done, then look again: they find the reservation, or
// nothing when the first call failed (a failed reserve is not remembered).
type pendingReserve struct {
	done chan struct{}
}

// idemKey is the key of the idempotency map. Customer ids are printable, so the NUL
// separator keeps distinct pairs distinct.
func idemKey(customer, key string) string { return customer + "\x00" + key }

// Reserve implements revguard.Inventory.
func (inv *Inventory) Reserve(ctx context.Context, req revguard.ReserveRequest) (revguard.Reservation, bool, error) {
	if err := inv.writable(ctx); err != nil {
		return revguard.Reservation{}, false, err
	}
	if err := checkReserve(req); err != nil {
		return revguard.Reservation{}, false, err
	}
	if req.IdempotencyKey != "" {
		return inv.reserveOnce(ctx, req)
	}
	s, op, seq, err := inv.prepareReserve(req)
	if s == nil {
		return revguard.Reservation{}, false, inv.settle(ctx, seq, err)
	}
	r, idText, err := inv.reserveAt(ctx, s, op)
	if err != nil {
		return revguard.Reservation{}, false, err
	}
	return r.createdViewID(idText), false, nil
}

// checkReserve refuses requests that the gateway would never send; the bounds keep a
// journal record small.
func checkReserve(req revguard.ReserveRequest) error {
	switch {
	case req.Quantity < 1:
		return revguard.Errorf(revguard.CodeInvalidRequest, "quantity must be at least 1")
	case req.CustomerID == "" || len(req.CustomerID) > 4*revguard.MaxCustomerIDLen:
		return revguard.Errorf(revguard.CodeInvalidRequest, "invalid customer id")
	case req.IdempotencyKey != "" && !revguard.ValidIdempotencyKey(req.IdempotencyKey):
		return revguard.Errorf(revguard.CodeInvalidRequest, "invalid idempotency key")
	}
	return nil
}

// reserveOnce runs a Reserve with an idempotency key: the first call with the key
// reserves; concurrent calls wait for its outcome; later calls replay it.
func (inv *Inventory) reserveOnce(ctx context.Context, req revguard.ReserveRequest) (revguard.Reservation, bool, error) {
	k := idemKey(req.CustomerID, req.IdempotencyKey)
	for {
		v, found := inv.idem.Load(k)
		var mine *pendingReserve
		if !found {
			mine = &pendingReserve{done: make(chan struct{})}
			v, found = inv.idem.LoadOrStore(k, mine)
		}
		if !found {
			s, op, seq, err := inv.prepareReserve(req)
			if s == nil {
				inv.idem.CompareAndDelete(k, mine)
				close(mine.done)
				return revguard.Reservation{}, false, inv.settle(ctx, seq, err)
			}
			op.idem, op.pending = k, mine // settled once applied (see finishReserve)
			r, idText, err := inv.reserveAt(ctx, s, op)
			if err != nil {
				return revguard.Reservation{}, false, err
			}
			return r.createdViewID(idText), false, nil
		}
		switch v := v.(type) {
		case *reservation:
			res, err := inv.replay(ctx, v, req)
			return res, err == nil, err
		case *pendingReserve:
			select {
			case <-v.done:
			case <-ctx.Done():
				return revguard.Reservation{}, false, ctx.Err()
			}
		}
	}
}

// replay returns r as it was created, for a request with r's idempotency key.
func (inv *Inventory) replay(ctx context.Context, r *reservation, req revguard.ReserveRequest) (revguard.Reservation, error) {
	if r.sku.id != req.SKU || int64(r.qty) != req.Quantity {
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeIdempotencyKeyReused,
			"idempotency key already used for %d units of SKU %s", r.qty, r.sku.id)
	}
	// r is in the map only once journaled, so the SKU's last seq covers it.
	if err := inv.gate(ctx, r.sku); err != nil {
		return revguard.Reservation{}, err
	}
	return r.createdView(), nil
}

// FindIdempotent implements revguard.Inventory. A key whose first Reserve is in flight
// is waited for.
func (inv *Inventory) FindIdempotent(ctx context.Context, req revguard.ReserveRequest) (revguard.Reservation, bool, error) {
	if req.IdempotencyKey == "" {
		return revguard.Reservation{}, false, nil
	}
	k := idemKey(req.CustomerID, req.IdempotencyKey)
	for {
		v, ok := inv.idem.Load(k)
		if !ok {
			return revguard.Reservation{}, false, nil
		}
		switch v := v.(type) {
		case *reservation:
			res, err := inv.replay(ctx, v, req)
			return res, err == nil, err
		case *pendingReserve:
			select {
			case <-v.done:
			case <-ctx.Done():
				return revguard.Reservation{}, false, ctx.Err()
			}
		}
	}
}

// prepareReserve does what a reservation needs before the SKU's serialisation point.
// It returns the SKU and the prepared reserve, or a nil SKU and the answer: the error
// for an unknown SKU, or the lock-free sold-out refusal and the seq it must wait for.
func (inv *Inventory) prepareReserve(req revguard.ReserveRequest) (*sku, reserveOp, uint64, error) {
	s := inv.lookup(req.SKU)
	if s == nil || !s.exists.Load() {
		return nil, reserveOp{}, 0, errSKUNotFound(req.SKU)
	}

	// The sold-out fast path: no lock, no allocation, no clock read unless needed
	// (settled). The units are not there, no hold is due (so none would be expired
	// first), and the sale is open. The loads are in the reverse order of publish's
	// stores.
	next, opens := s.nextExpiry.Load(), s.opensAt.Load()
	if s.avail.Load() < req.Quantity && inv.settled(next, opens) {
		return nil, reserveOp{}, s.lastSeq.Load(), inv.errSoldOut
	}

	// What needs no lock is done before taking it, to keep a hot SKU's critical
	// section short: the allocation, and the id, registered (so unique) but not usable
	// until the reservation is applied (state 0 reads as unknown). The id's time is
	// read here, not at the serialisation point: it only makes ids sort about by
	// creation (a call that begins after another returned gets a later one), and no
	// rule or record reads a time from an id. The reservation's times are read when it
	// is applied (reserveLocked).
	r := &reservation{sku: s, customer: req.CustomerID}
	if req.IdempotencyKey != "" {
		r.extra = &resExtra{idemKey: req.IdempotencyKey}
	}
	idAt := inv.now()
	for {
		r.id = newID(idAt)
		if inv.res.insert(r) {
			break
		}
	}
	return s, reserveOp{req: req, r: r, idText: r.id.String()}, 0, nil
}

// reserveLocked applies one reserve to s, under s.mu: the checks, the journal
// append, the change, at the time read here.
func (inv *Inventory) reserveLocked(s *sku, r *reservation, idText string, req revguard.ReserveRequest) error {
	now := inv.clock(s)
	if err := inv.expireDue(s, now); err != nil {
		return err
	}
	if opens := s.opensAt.Load(); now < opens {
		return revguard.Errorf(revguard.CodeSaleNotOpen, "the sale of %s opens at %s",
			s.id, unixTime(opens).Format(time.RFC3339Nano))
	}
	if s.available() < req.Quantity {
		return inv.errSoldOut
	}
	if owned := s.owned(req.CustomerID); req.Quantity > int64(s.limit)-owned {
		return revguard.Errorf(revguard.CodeLimitExceeded,
			"the limit is %d units per customer; %d already held or bought", s.limit, owned)
	}
	r.createdAt = now
	r.expiresAt = now + s.holdNanos()
	r.qty = int32(req.Quantity) // <= limit <= MaxPerCustomerLimit
	ev := revguard.Event{
		Type:           revguard.EventReserved,
		Time:           unixTime(now),
		SKU:            s.id,
		ReservationID:  idText,
		CustomerID:     r.customer,
		Quantity:       req.Quantity,
		ExpiresAt:      unixTime(r.expiresAt),
		IdempotencyKey: req.IdempotencyKey,
	}
	seq, err := inv.append(&ev)
	if err != nil {
		return err
	}
	r.state = stHeld
	inv.applyReserve(s, r)
	inv.publish(s, seq)
	return nil
}

func errSKUNotFound(id string) error {
	return revguard.Errorf(revguard.CodeSKUNotFound, "no SKU %q", id)
}
