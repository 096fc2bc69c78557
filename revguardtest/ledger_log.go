package revguardtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// LedgerTime is the time of the first event the ledger suite writes: nanosecond
// precision, to check that a ledger keeps times exactly.
var LedgerTime = time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)

// EventLog builds a consistent journal of events for ledger tests: strictly increasing
// seqs from 1, times one millisecond apart from LedgerTime, reservation ids that sort in
// creation order.
type EventLog struct {
	Events []revguard.Event
	n      int // reservations created
}

// ReservationID returns the id of the n-th reservation an EventLog creates.
func ReservationID(n int) string { return fmt.Sprintf("01LEDGERTEST%014d", n) }

func (l *EventLog) add(ev revguard.Event) revguard.Event {
	ev.Seq = uint64(len(l.Events) + 1)
	ev.Time = LedgerTime.Add(time.Duration(ev.Seq) * time.Millisecond)
	l.Events = append(l.Events, ev)
	return ev
}

// PutSKU appends an EventSKUPut.
func (l *EventLog) PutSKU(sku string, stock int64) revguard.Event {
	return l.add(revguard.Event{Type: revguard.EventSKUPut, SKU: sku, Stock: stock,
		PerCustomerLimit: 5, HoldSeconds: 600})
}

// Reserve appends an EventReserved of a new reservation and returns it.
func (l *EventLog) Reserve(sku, customer string, qty int64) revguard.Event {
	l.n++
	ev := revguard.Event{Type: revguard.EventReserved, SKU: sku, ReservationID: ReservationID(l.n),
		CustomerID: customer, Quantity: qty, IdempotencyKey: fmt.Sprintf("key-%d", l.n)}
	ev.Seq = uint64(len(l.Events) + 1)
	ev.ExpiresAt = LedgerTime.Add(time.Duration(ev.Seq)*time.Millisecond + 600*time.Second)
	return l.add(ev)
}

// Change appends an event of type t (EventConfirmed, EventReleased or EventExpired) of
// the reservation that r created.
func (l *EventLog) Change(t revguard.EventType, r revguard.Event, orderRef string, revived bool) revguard.Event {
	return l.add(revguard.Event{Type: t, SKU: r.SKU, ReservationID: r.ReservationID,
		CustomerID: r.CustomerID, Quantity: r.Quantity, OrderRef: orderRef, Revived: revived})
}

// Expect returns the reservations the ledger must hold after applying every event of l,
// in id order.
func (l *EventLog) Expect() []revguard.Reservation {
	var out []revguard.Reservation
	idx := map[string]int{}
	for _, ev := range l.Events {
		switch ev.Type {
		case revguard.EventReserved:
			idx[ev.ReservationID] = len(out)
			out = append(out, revguard.Reservation{ID: ev.ReservationID, SKU: ev.SKU, CustomerID: ev.CustomerID,
				Quantity: ev.Quantity, Status: revguard.StatusHeld, CreatedAt: ev.Time, ExpiresAt: ev.ExpiresAt})
		case revguard.EventConfirmed:
			r := &out[idx[ev.ReservationID]]
			r.Status, r.ConfirmedAt = revguard.StatusConfirmed, ev.Time
			if r.OrderRef == "" {
				r.OrderRef = ev.OrderRef
			}
		case revguard.EventReleased:
			r := &out[idx[ev.ReservationID]]
			r.Status, r.ReleasedAt = revguard.StatusReleased, ev.Time
		case revguard.EventExpired:
			out[idx[ev.ReservationID]].Status = revguard.StatusExpired
		}
	}
	return out
}

// MustApply applies events to l or fails the test.
func MustApply(tb testing.TB, l revguard.Ledger, events []revguard.Event) {
	tb.Helper()
	if err := l.ApplyEvents(context.Background(), events); err != nil {
		tb.Fatalf("ApplyEvents(seq %d..%d): %v", events[0].Seq, events[len(events)-1].Seq, err)
	}
}

// AllOrders pages through every reservation matching f and returns them, failing the
// test on an error or on an id seen twice.
func AllOrders(tb testing.TB, l revguard.Ledger, f revguard.OrderFilter) []revguard.Reservation {
	tb.Helper()
	var out []revguard.Reservation
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		if pages > 100_000 {
			tb.Fatalf("FindOrders(%+v): paging does not end", f)
		}
		p, err := l.FindOrders(context.Background(), f)
		if err != nil {
			tb.Fatalf("FindOrders(%+v): %v", f, err)
		}
		for _, r := range p.Items {
			if seen[r.ID] {
				tb.Fatalf("FindOrders(%+v): %s returned twice", f, r.ID)
			}
			seen[r.ID] = true
		}
		out = append(out, p.Items...)
		if p.NextCursor == "" {
			return out
		}
		f.Cursor = p.NextCursor
	}
}

// CheckReservations fails the test unless got equals want, field by field.
func CheckReservations(tb testing.TB, got, want []revguard.Reservation) {
	tb.Helper()
	for _, d := range revguard.DiffLedger(want, got) {
		tb.Errorf("ledger differs from expected: %s", d)
	}
	if len(got) != len(want) {
		tb.Fatalf("got %d reservations, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID {
			tb.Fatalf("item %d is %s, want %s (wrong order)", i, got[i].ID, want[i].ID)
		}
		for _, tm := range []time.Time{got[i].CreatedAt, got[i].ExpiresAt, got[i].ConfirmedAt, got[i].ReleasedAt} {
			if !tm.IsZero() && tm.Location() != time.UTC {
				tb.Fatalf("%s: time %v is not in UTC", got[i].ID, tm)
			}
		}
	}
}
