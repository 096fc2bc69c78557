package revguardtest

import (
	"context"
	"testing"

	"github.com/revenueguard/revguard"
)

// ReservationLedger is a Ledger that also finds one reservation by id, as the API needs
// for reservations that the engine no longer keeps in memory.
type ReservationLedger interface {
	revguard.Ledger
	revguard.ReservationFinder
}

// TestFindReservation checks FindReservation against the ledgers made by open, each
// empty and used by one subtest.
func TestFindReservation(t *testing.T, open func(tb testing.TB) ReservationLedger) {
	t.Run("OK", func(t *testing.T) {
		l := open(t)
		var log EventLog
		a := log.Reserve("shoe", "alice", 2)
		log.Reserve("shoe", "bob", 1)
		log.Change(revguard.EventConfirmed, a, "order-7", false)
		MustApply(t, l, log.Events)
		want := log.Expect()
		for _, w := range want {
			got, err := l.FindReservation(context.Background(), w.ID)
			if err != nil {
				t.Fatalf("FindReservation(%s): %v", w.ID, err)
			}
			CheckReservations(t, []revguard.Reservation{got}, []revguard.Reservation{w})
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		l := open(t)
		var log EventLog
		log.Reserve("shoe", "alice", 1)
		MustApply(t, l, log.Events)
		for _, id := range []string{ReservationID(2), "", "01LEDGERTEST", ReservationID(1) + " "} {
			_, err := l.FindReservation(context.Background(), id)
			checkCode(t, "FindReservation("+id+")", err, revguard.CodeReservationNotFound)
		}
	})
}
