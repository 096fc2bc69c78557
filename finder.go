package revguard

import "context"

// ReservationFinder is implemented by a Ledger that can find one reservation by id.
// The gateway asks it for a reservation that the Inventory no longer holds: the
// distributed inventory forgets a reservation some time after it became final (the
// ledger keeps it for good), and GET, confirm and release of such a reservation are
// then answered from the ledger, as the engine would have answered them.
type ReservationFinder interface {
	// FindReservation returns the reservation id in its latest state in the ledger, or
	// fails with CodeReservationNotFound. The ledger follows the engine
	// asynchronously: a reservation the engine made a moment ago may not be there yet.
	FindReservation(ctx context.Context, id string) (Reservation, error)
}
