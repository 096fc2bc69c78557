package httpapi

import (
	"context"
	"time"

	"github.com/revenueguard/revguard"
)

// The distributed inventory forgets a reservation some time after it became final
// (25 hours by default); the ledger keeps it for good. When the Inventory answers
// reservation_not_found and the Ledger is a revguard.ReservationFinder, GET, confirm
// and release are answered from the ledger, exactly as the engine answers a final
// reservation (revguard.ConfirmOutcome, revguard.ReleaseOutcome), and the ownership
// rules are the same: another customer's reservation does not exist. Nothing is ever
// changed from the ledger: a final reservation's answers change nothing anyway, except
// a revive, which needs the engine and is refused (docs/api.md).

// findArchived returns reservation id from the ledger, or fails with
// CodeReservationNotFound when there is no ledger to ask or it does not have it.
func (s *Server) findArchived(ctx context.Context, id string) (revguard.Reservation, error) {
	f, ok := s.Ledger.(revguard.ReservationFinder)
	if !ok {
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeReservationNotFound, notFoundDetail)
	}
	return f.FindReservation(ctx, id)
}

// archivedOwned returns the reservation of the confirm or release req from the ledger:
// customerID's own ("" for the admin, who may release any), and final. A reservation
// that the ledger still has as held is one whose final state has not reached it yet
// (the engine forgets only final ones): nothing can be decided, 503.
func (s *Server) archivedOwned(ctx context.Context, id, customerID string) (revguard.Reservation, error) {
	res, err := s.findArchived(ctx, id)
	switch {
	case err != nil:
		return res, err
	case customerID != "" && res.CustomerID != customerID:
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeReservationNotFound, notFoundDetail)
	case !res.Status.Final():
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeUnavailable,
			"the reservation's latest state has not reached the ledger yet, try again")
	}
	return res, nil
}

// confirmArchived answers the confirm req of a reservation only the ledger has.
func (s *Server) confirmArchived(ctx context.Context, req revguard.ConfirmRequest) (revguard.Reservation, error) {
	res, err := s.archivedOwned(ctx, req.ID, req.CustomerID)
	if err != nil {
		return res, err
	}
	_, retake, code := revguard.ConfirmOutcome(res.Status, req.Revive)
	switch {
	case retake:
		// docs/api.md: a revive that cannot take the units again is sold_out (or
		// limit_exceeded), the shop's signal to refund.
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeSoldOut,
			"the hold expired at %s and is too old to revive: its units cannot be taken again", res.ExpiresAt.UTC().Format(time.RFC3339Nano))
	case code != "":
		return revguard.Reservation{}, archivedRefusal(code, res)
	}
	return res, nil // confirmed: confirming again changes nothing
}

// releaseArchived answers the release of reservation id, by customerID ("" for the
// admin), that only the ledger has.
func (s *Server) releaseArchived(ctx context.Context, id, customerID string) (revguard.Reservation, error) {
	res, err := s.archivedOwned(ctx, id, customerID)
	if err != nil {
		return res, err
	}
	if _, code := revguard.ReleaseOutcome(res.Status); code != "" {
		return revguard.Reservation{}, archivedRefusal(code, res)
	}
	return res, nil // released: releasing again changes nothing
}

// archivedRefusal is the error of code for res, with the engine's details.
func archivedRefusal(code revguard.Code, res revguard.Reservation) error {
	switch code {
	case revguard.CodeHoldExpired:
		return revguard.Errorf(code, "the hold expired at %s", res.ExpiresAt.UTC().Format(time.RFC3339Nano))
	case revguard.CodeHoldReleased:
		return revguard.Errorf(code, "the reservation was released")
	case revguard.CodeAlreadyConfirmed:
		return revguard.Errorf(code, "the reservation is confirmed")
	}
	return revguard.Errorf(code, "")
}
