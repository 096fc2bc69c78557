package inproc

import (
	"github.com/revenueguard/revguard"
)

// The apply functions change the memory state by one journaled change. The live path
// calls them, under the SKU's lock, after the journal accepted the event; recovery
// calls them for each replayed event. Sharing them keeps the two exactly alike.

func (inv *Inventory) applyPut(s *sku, stock, limit, holdSeconds, opensAt int64) {
	s.stock = stock
	s.limit = int32(limit)          // validated: at most MaxPerCustomerLimit
	s.holdSecs = int32(holdSeconds) // validated: at most MaxHoldSeconds
	s.opensAt.Store(opensAt)
	if !s.exists.Load() {
		s.exists.Store(true)
		inv.skuCount.Add(1)
	}
}

func (inv *Inventory) applyReserve(s *sku, r *reservation) {
	b := s.bookOrNew()
	b.all = append(b.all, r)
	b.holds.push(holdEntry{at: r.expiresAt, r: r})
	s.addOwned(r.customer, int64(r.qty))
	s.held += int64(r.qty)
	inv.holdCount.Add(1)
}

func (inv *Inventory) applyConfirm(s *sku, r *reservation, seq uint64, at int64, orderRef string, revived bool) {
	q := int64(r.qty)
	if revived {
		s.addOwned(r.customer, q)
	} else {
		s.held -= q
		inv.holdCount.Add(-1)
	}
	s.sold += q
	s.book.beforeChange(r)
	r.state = stConfirmed
	r.doneAt = at
	if orderRef != "" {
		// A new resExtra, not the old one changed: a snapshot's copy of r may share it.
		r.extra = &resExtra{idemKey: r.idemKey(), orderRef: orderRef}
	}
	inv.finalized(s, r, seq, at)
}

func (inv *Inventory) applyRelease(s *sku, r *reservation, seq uint64, at int64) {
	inv.unhold(s, r)
	s.book.beforeChange(r)
	r.state = stReleased
	r.doneAt = at
	inv.finalized(s, r, seq, at)
}

func (inv *Inventory) applyExpire(s *sku, r *reservation, seq uint64, at int64) {
	inv.unhold(s, r)
	s.book.beforeChange(r)
	r.state = stExpired
	inv.finalized(s, r, seq, at)
}

func (inv *Inventory) unhold(s *sku, r *reservation) {
	q := int64(r.qty)
	s.held -= q
	s.addOwned(r.customer, -q)
	inv.holdCount.Add(-1)
}

// expireDue expires, and journals, every hold of s whose deadline is at or before now,
// so that every answer is exact at now even if the expirer has not run yet (or the
// clock is injected). Entries of holds that ended otherwise are dropped on the way.
// Only an open, writable inventory expires anything. Under s.mu.
func (inv *Inventory) expireDue(s *sku, now int64) error {
	b := s.book
	if b == nil || len(b.holds) == 0 || b.holds[0].at > now || inv.ReadOnly || inv.state.Load() != stateOpen {
		return nil
	}
	var seq uint64
	var err error
	for len(b.holds) > 0 && b.holds[0].at <= now {
		r := b.holds[0].r
		if r.state != stHeld {
			b.holds.pop()
			continue
		}
		ev := revguard.Event{
			Type:          revguard.EventExpired,
			Time:          unixTime(now),
			SKU:           s.id,
			ReservationID: r.id.String(),
			CustomerID:    r.customer,
			Quantity:      int64(r.qty),
		}
		var sq uint64
		if sq, err = inv.append(&ev); err != nil {
			break
		}
		b.holds.pop()
		inv.applyExpire(s, r, sq, now)
		seq = sq
	}
	if seq != 0 {
		inv.publish(s, seq)
	} else {
		inv.armTimer(s) // only stale entries were dropped
	}
	return err
}
