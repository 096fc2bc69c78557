package inproc

import (
	"time"
)

// Final reservations leave memory once they are old enough (Inventory.Retention), so
// that a long-running engine's memory follows the holds in force, not every
// reservation ever made. The ledger keeps them: the gateway answers for a reservation
// the engine no longer has from the ledger (revguard.ReservationFinder), with the same
// answers. A reservation may leave only once the ledger is known to have its final
// state durably (Inventory.Archived), and, with snapshots, once a snapshot taken after
// its final change exists: recovery replays the journal after the newest snapshot, and
// must never meet a change of a reservation that is no longer there.
//
// A reservation that leaves memory takes its idempotency key with it: Retention must
// be at least the API's 24 hours during which a key is remembered (cmd/revguard
// enforces that). A customer's confirmed units still count against the limit: those
// counts are kept per customer, not per reservation.

// finalEntry is a reservation that became final: when, and with which journal seq.
type finalEntry struct {
	seq   uint64
	at    int64 // Unix ns
	r     *reservation
	state resState // the state it became; a revive later makes it stale
}

// finalized queues r, which became final at seq and time at, for eviction. Under s.mu.
func (inv *Inventory) finalized(s *sku, r *reservation, seq uint64, at int64) {
	if inv.Retention <= 0 {
		return
	}
	b := s.bookOrNew()
	b.final = append(b.final, finalEntry{seq: seq, at: at, r: r, state: r.state})
}

// queueSnapshotFinals queues the final reservations loaded from the snapshot, each
// with the snapshot's seq (no later than its final change: conservative).
func (inv *Inventory) queueSnapshotFinals() {
	if inv.Retention <= 0 {
		return
	}
	inv.skus.Range(func(_, v any) bool {
		s := v.(*sku)
		if s.book == nil {
			return true
		}
		for _, r := range s.book.all {
			if r.state != stHeld {
				at := r.doneAt
				if at == 0 {
					at = r.expiresAt
				}
				inv.finalized(s, r, inv.lastSnap, at)
			}
		}
		return true
	})
}

// evictEvery is how often the evictor looks for reservations to drop: often enough
// for a short Retention in tests, at most once a minute.
func (inv *Inventory) evictEvery() time.Duration {
	return max(min(inv.Retention/4, time.Minute), 10*time.Millisecond)
}

// runEvictor is the eviction goroutine. Open starts it when Retention is set (not when
// ReadOnly); it exits when Close closes inv.stop.
func (inv *Inventory) runEvictor() {
	defer inv.wg.Done()
	t := time.NewTicker(inv.evictEvery())
	defer t.Stop()
	for {
		select {
		case <-inv.stop:
			return
		case <-t.C:
			inv.evict()
		}
	}
}

// evict drops from memory every final reservation that may leave (see above), and
// returns how many left.
func (inv *Inventory) evict() int {
	limit := uint64(0)
	if inv.Archived != nil {
		limit = inv.Archived()
	}
	if inv.Dir != "" {
		inv.snapMu.Lock()
		limit = min(limit, inv.lastSnap)
		inv.snapMu.Unlock()
	}
	before := inv.now() - int64(inv.Retention)
	n := 0
	inv.skus.Range(func(_, v any) bool {
		s := v.(*sku)
		s.mu.Lock()
		n += inv.evictSKU(s, before, limit)
		s.mu.Unlock()
		return true
	})
	inv.evicted.Add(int64(n))
	return n
}

// evictSKU drops the final reservations of s that became final before the time
// before, with a seq at most limit. Under s.mu.
func (inv *Inventory) evictSKU(s *sku, before int64, limit uint64) int {
	b := s.book
	if b == nil || len(b.final) == 0 {
		return 0
	}
	i, n := 0, 0
	for ; i < len(b.final); i++ {
		e := b.final[i]
		if e.r.state != e.state {
			continue // revived since: a later entry stands for it
		}
		if e.at > before || e.seq > limit {
			break
		}
		r := e.r
		b.beforeChange(r)
		r.state = stEvicted
		inv.res.remove(r.id)
		if k := r.idemKey(); k != "" {
			inv.idem.CompareAndDelete(idemKey(r.customer, k), r)
		}
		n++
	}
	if i == 0 {
		return 0
	}
	clear(b.final[:i])
	b.final = shrink(b.final[i:])
	if n > 0 {
		// In place, unless a snapshot is reading the array (writeSKU).
		inPlace := b.preImages == nil
		kept := b.all[:0]
		if !inPlace {
			kept = make([]*reservation, 0, len(b.all)-n)
		}
		for _, r := range b.all {
			if r.state != stEvicted {
				kept = append(kept, r)
			}
		}
		if inPlace {
			clear(b.all[len(kept):])
		}
		b.all = shrink(kept)
	}
	return n
}

// shrink returns s in a smaller array when it uses less than a quarter of its own.
func shrink[T any](s []T) []T {
	if cap(s) > 64 && len(s) < cap(s)/4 {
		return append(make([]T, 0, 2*len(s)), s...)
	}
	return s
}
