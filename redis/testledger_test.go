package redis_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/revenueguard/revguard"
)

// testLedger is an in-memory revguard.Ledger that applies events as the PostgreSQL
// ledger does: idempotently and in any order, each row changed only by an event whose
// Seq is higher than the last one applied to it. It counts how often each Seq came,
// so that tests can tell "exactly once in effect" from "at least once".
type testLedger struct {
	mu    sync.Mutex
	res   map[string]ledgerRes
	skus  map[string]uint64 // SKU → seq of its last applied put
	times map[uint64]int    // Seq → ApplyEvents calls that carried it

	// hook, when set, runs first in every ApplyEvents; an error fails the call.
	hook func(ctx context.Context) error
}

type ledgerRes struct {
	r   revguard.Reservation
	seq uint64
}

func newTestLedger() *testLedger {
	return &testLedger{res: make(map[string]ledgerRes), skus: make(map[string]uint64), times: make(map[uint64]int)}
}

func (l *testLedger) ApplyEvents(ctx context.Context, events []revguard.Event) error {
	if l.hook != nil {
		if err := l.hook(ctx); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range events {
		l.times[e.Seq]++
		if e.Type == revguard.EventSKUPut {
			l.skus[e.SKU] = max(l.skus[e.SKU], e.Seq)
			continue
		}
		if row, ok := l.res[e.ReservationID]; ok && row.seq >= e.Seq {
			continue
		}
		r := revguard.Reservation{ID: e.ReservationID, SKU: e.SKU, CustomerID: e.CustomerID, Quantity: e.Quantity,
			CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, OrderRef: e.OrderRef}
		switch e.Type {
		case revguard.EventReserved:
			r.Status = revguard.StatusHeld
		case revguard.EventConfirmed:
			r.Status, r.ConfirmedAt = revguard.StatusConfirmed, e.Time
		case revguard.EventReleased:
			r.Status, r.ReleasedAt = revguard.StatusReleased, e.Time
		case revguard.EventExpired:
			r.Status = revguard.StatusExpired
		}
		l.res[e.ReservationID] = ledgerRes{r: r, seq: e.Seq}
	}
	return nil
}

func (l *testLedger) LastApplied(context.Context) (uint64, error) { return 0, nil }

func (l *testLedger) FindOrders(context.Context, revguard.OrderFilter) (revguard.OrderPage, error) {
	return revguard.OrderPage{}, errors.New("test ledger: FindOrders is not implemented")
}

// reservations returns every reservation in the ledger.
func (l *testLedger) reservations() []revguard.Reservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]revguard.Reservation, 0, len(l.res))
	for _, row := range l.res {
		out = append(out, row.r)
	}
	return out
}

// distinct returns how many distinct events the ledger received, and how many of
// them more than once.
func (l *testLedger) distinct() (events, repeated int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.times {
		if n > 1 {
			repeated++
		}
	}
	return len(l.times), repeated
}

// mustMatchInventory fails tb unless the ledger holds exactly the inventory's
// reservations, field by field.
func (l *testLedger) mustMatchInventory(tb testing.TB, inv interface {
	ForEachReservation(context.Context, func(revguard.Reservation) bool) error
}) {
	tb.Helper()
	var engine []revguard.Reservation
	if err := inv.ForEachReservation(tb.Context(), func(r revguard.Reservation) bool {
		engine = append(engine, r)
		return true
	}); err != nil {
		tb.Fatalf("ForEachReservation: %v", err)
	}
	if len(engine) == 0 {
		tb.Fatal("the inventory has no reservation: the test tests nothing")
	}
	if diffs := revguard.DiffLedger(engine, l.reservations()); len(diffs) > 0 {
		for i, d := range diffs {
			if i == 10 {
				break
			}
			tb.Errorf("ledger differs: %s", d)
		}
		tb.Fatalf("%d differences between the inventory (%d reservations) and the ledger", len(diffs), len(engine))
	}
}
