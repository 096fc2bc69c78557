package inproc

import (
	"math"
	"sync"
	"time"
)

// expirer is the one engine-wide hold timer: a min-heap of (deadline, SKU) with an
// entry for each SKU that has holds, served by one goroutine with one time.Timer. An
// idle SKU has no entry, so it costs nothing, and expiry never scans the SKUs.
//
// A SKU registers its earliest hold's deadline, and registers again only when it
// gets an earlier one (sku.timerAt tells which entry is current). An entry may fire
// early, when the hold it stood for ended otherwise; the SKU then registers its new
// earliest deadline. Superseded entries fire harmlessly.
type expirer struct {
	// mu guards heap. Lock order: a sku.mu may be held while taking mu (armTimer);
	// mu is never held while taking a sku.mu.
	mu   sync.Mutex
	heap deadlineHeap[timerEntry]
	wake chan struct{} // capacity 1: the earliest deadline changed
}

type timerEntry struct {
	at int64 // Unix ns
	s  *sku
}

func (t timerEntry) deadline() int64 { return t.at }

// maxSleep bounds the expirer's sleep so that a jump of the wall clock (or of an
// injected clock) delays an expiry by at most this much. It costs one wake-up per
// maxSleep while some hold exists, and nothing when none does.
const maxSleep = time.Second

// armTimer publishes the deadline of s's earliest hold and makes sure the expirer
// will look at s by then. Under s.mu.
func (inv *Inventory) armTimer(s *sku) {
	next := int64(math.MaxInt64)
	if b := s.book; b != nil {
		// Drop the entries of holds that ended otherwise from the top, so that
		// nextExpiry is exact: a SKU whose holds all ended looks idle at once.
		for len(b.holds) > 0 && b.holds[0].r.state != stHeld {
			b.holds.pop()
		}
		if len(b.holds) > 0 {
			next = b.holds[0].at
		}
	}
	s.nextExpiry.Store(next)
	if next == math.MaxInt64 || inv.ReadOnly || (s.timerAt != 0 && s.timerAt <= next) {
		return
	}
	s.timerAt = next
	inv.exp.push(timerEntry{at: next, s: s})
}

func (e *expirer) push(t timerEntry) {
	e.mu.Lock()
	e.heap.push(t)
	first := e.heap[0] == t // the earliest deadline changed: the expirer must re-arm
	e.mu.Unlock()
	if first {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// popDue appends to due the entries at or before now, and returns the earliest
// deadline left (0: none).
func (e *expirer) popDue(now int64, due []timerEntry) ([]timerEntry, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.heap
	for len(h) > 0 && h[0].at <= now {
		due = append(due, h[0])
		h.pop()
	}
	e.heap = h
	if len(h) == 0 {
		return due, 0
	}
	return due, h[0].at
}

// runExpirer is the expirer goroutine. Open starts it (not when ReadOnly); it exits
// when Close closes inv.stop.
func (inv *Inventory) runExpirer() {
	defer inv.wg.Done()
	timer := time.NewTimer(maxSleep)
	defer timer.Stop()
	var due []timerEntry
	for {
		select {
		case <-inv.stop:
			return
		default:
		}
		now := inv.now()
		var next int64
		due, next = inv.exp.popDue(now, due[:0])
		for _, t := range due {
			inv.expireSKU(t)
		}
		clear(due)
		if len(due) > 0 {
			continue // the expiries took time: look again
		}
		var wait <-chan time.Time
		if next != 0 {
			timer.Reset(min(time.Duration(next-now), maxSleep))
			wait = timer.C
		}
		select {
		case <-inv.stop:
			return
		case <-inv.exp.wake:
			timer.Stop()
		case <-wait:
		}
	}
}

// expireSKU serves the expirer entry t: it expires the due holds of its SKU and
// registers the SKU's next deadline. It does not wait for the fsync: the next answer
// about the SKU does (the output gate).
func (inv *Inventory) expireSKU(t timerEntry) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timerAt == t.at {
		s.timerAt = 0
	}
	if inv.state.Load() != stateOpen {
		return // closing: expireDue would do nothing, and re-arming would spin
	}
	now := inv.clock(s)
	if err := inv.expireDue(s, now); err != nil {
		inv.Logger.Error("inproc: expire holds", "sku", s.id, "err", err)
		// Try again in a second rather than spin on a failed journal.
		s.timerAt = now + int64(time.Second)
		inv.exp.push(timerEntry{at: s.timerAt, s: s})
		return
	}
	inv.armTimer(s)
}
