package inproc

import (
	"context"
	"time"

	"github.com/revenueguard/revguard"
)

// Claim implements revguard.WaitingRoom.
func (w *WaitingRoom) Claim(ctx context.Context, sku, customerID string) (bool, error) {
	r := w.find(sku)
	if r == nil {
		return false, nil
	}
	now := w.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.enabled {
		return false, nil
	}
	p := r.places[customerID]
	if err := claimError(p, now); err != nil {
		return false, err
	}
	p.claimed = true
	return true, nil
}

// claimError says why p (nil: no place) holds no admission that can be claimed at now.
func claimError(p *place, now time.Time) error {
	var why string
	switch {
	case p == nil || p.err != nil:
		why = "join the waiting room of this SKU and wait for your turn"
	case !p.admitted:
		why = "your turn in the waiting room has not come yet"
	case p.used:
		why = "your admission was already used for a reservation"
	case p.claimed:
		why = "a reservation with your admission is under way"
	case !now.Before(p.until):
		why = "your admission lapsed at " + p.until.UTC().Format(time.RFC3339Nano)
	default:
		return nil
	}
	return revguard.Errorf(revguard.CodeAdmissionRequired, "%s", why)
}

// Settle implements revguard.WaitingRoom.
func (w *WaitingRoom) Settle(ctx context.Context, sku, customerID string, used bool) error {
	r := w.find(sku)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	p := r.places[customerID]
	if p == nil || !p.claimed {
		r.mu.Unlock()
		return nil
	}
	p.claimed = false
	if !used {
		r.mu.Unlock()
		return nil
	}
	p.used = true
	r.used++
	b := w.commit.enqueue(revguard.RoomRecord{Type: revguard.RoomUsed, SKU: sku, Time: w.now(), CustomerID: customerID})
	r.mu.Unlock()
	return w.commit.wait(b)
}

// Advance implements revguard.WaitingRoom.
func (w *WaitingRoom) Advance(ctx context.Context, sku string) error {
	r := w.find(sku)
	if r == nil {
		return errNoRoom(sku)
	}
	r.adv.Lock()
	defer r.adv.Unlock()
	s, err := w.Inventory.FindSKU(ctx, sku)
	if err != nil {
		return err
	}
	now := w.now()
	r.mu.Lock()
	if !r.enabled {
		r.mu.Unlock()
		return nil
	}
	r.opensAt = s.OpensAt
	if r.drawing != nil || r.drawDue(s.OpensAt, now) {
		if err := w.draw(r, now); err != nil { // releases r.mu meanwhile; Advance's adv stays held
			r.mu.Unlock()
			return err
		}
		if !r.enabled {
			r.mu.Unlock()
			return nil
		}
	}
	// Lapsed and used admissions no longer count.
	kept := r.admitted[:0]
	for _, p := range r.admitted {
		if p.current(now) {
			kept = append(kept, p)
		}
	}
	clear(r.admitted[len(kept):])
	r.admitted = kept

	var recs []revguard.RoomRecord
	soldOut := s.Closed()
	if soldOut != r.soldOut {
		typ := revguard.RoomClosed
		if !soldOut {
			typ = revguard.RoomReopened
		}
		recs = append(recs, revguard.RoomRecord{Type: typ, SKU: sku, Time: now})
	}

	// The pace: a bucket of up to one second's admissions.
	rate := float64(r.settings.AdmitPerSecond)
	if r.last.IsZero() || now.Before(r.last) {
		r.tokens = rate
	} else {
		r.tokens = min(rate, r.tokens+now.Sub(r.last).Seconds()*rate)
	}
	r.last = now

	// The head moves once the admissions are durable: until then the places of the
	// batch keep their positions (r.adv keeps other advances out meanwhile).
	var batch []*place
	next := r.head
	if s.Open(now) && !soldOut {
		n := min(int64(r.tokens), s.Available-int64(len(r.admitted)))
		until := now.Add(r.settings.AdmissionWindow(s.HoldDuration()))
		for ; n > 0 && next < len(r.line); next++ {
			p := r.line[next]
			if p == nil || p.err != nil {
				continue
			}
			batch = append(batch, p)
			recs = append(recs, revguard.RoomRecord{Type: revguard.RoomAdmitted, SKU: sku, Time: now, CustomerID: p.customer, Ticket: p.ticket, Until: until})
			n--
		}
		r.tokens -= float64(len(batch))
	}
	var b *commitBatch
	if len(recs) > 0 {
		b = w.commit.enqueue(recs...)
	}
	r.mu.Unlock()
	err = w.commit.wait(b)

	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.tokens += float64(len(batch))
		return err
	}
	r.head = next
	r.soldOut = soldOut
	until := now.Add(r.settings.AdmissionWindow(s.HoldDuration()))
	for _, p := range batch {
		p.admitted, p.admittedAt, p.until = true, now, until
		r.admitted = append(r.admitted, p)
	}
	return nil
}
