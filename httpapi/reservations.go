package httpapi

import (
	"net/http"

	"github.com/revenueguard/revguard"
)

// reservationID returns the {id} path value, or writes 404 reservation_not_found for an
// id that cannot exist: ids are opaque, but always 1 to 128 characters of
// [A-Za-z0-9._:-], so anything else is answered like an unknown id, without asking a
// store.
func (s *Server) reservationID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !revguard.ValidSKUID(id) {
		s.writeProblem(w, r, revguard.CodeReservationNotFound, notFoundDetail)
		return "", false
	}
	return id, true
}

const notFoundDetail = "no such reservation"

// writeReservationError answers err of a reservation endpoint. Every not-found answer is
// the same, whatever the store's detail, so that another customer's reservation cannot
// be told apart from one that does not exist.
func (s *Server) writeReservationError(w http.ResponseWriter, r *http.Request, err error) {
	if revguard.ErrorCode(err) == revguard.CodeReservationNotFound {
		s.writeProblem(w, r, revguard.CodeReservationNotFound, notFoundDetail)
		return
	}
	s.writeError(w, r, err)
}

// handleGetReservation answers a reservation to its owner or the admin; to anyone else
// it does not exist (404, never 403: existence is not revealed).
func (s *Server) handleGetReservation(w http.ResponseWriter, r *http.Request) {
	c, ok := s.authenticate(w, r)
	if !ok || !s.getBodyAllowed(w, r) {
		return
	}
	id, ok := s.reservationID(w, r)
	if !ok {
		return
	}
	if !s.allow(w, r, c, false) {
		return
	}
	res, err := s.Inventory.FindReservation(r.Context(), id)
	if revguard.ErrorCode(err) == revguard.CodeReservationNotFound {
		res, err = s.findArchived(r.Context(), id)
	}
	if err == nil && !c.admin && res.CustomerID != c.customerID {
		err = &revguard.Error{Code: revguard.CodeReservationNotFound, Detail: notFoundDetail}
	}
	if err != nil {
		s.writeReservationError(w, r, err)
		return
	}
	s.writeReservation(w, http.StatusOK, &res)
}

// handleConfirm turns the caller's hold into a sale (owner only), or with revive an
// expired one if its units can be taken again.
func (s *Server) handleConfirm(w http.ResponseWriter, r *http.Request) {
	c, ok := s.requireCustomer(w, r)
	if !ok {
		return
	}
	id, ok := s.reservationID(w, r)
	if !ok {
		return
	}
	var body confirmRequest
	err := withBody(r, func(b []byte) (err error) {
		body, err = decodeConfirm(b)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.allow(w, r, c, true) {
		return
	}
	req := revguard.ConfirmRequest{ID: id, CustomerID: c.customerID, OrderRef: body.OrderRef, Revive: body.Revive}
	res, err := s.Inventory.Confirm(r.Context(), req)
	if revguard.ErrorCode(err) == revguard.CodeReservationNotFound {
		res, err = s.confirmArchived(r.Context(), req)
	}
	if err != nil {
		s.writeReservationError(w, r, err)
		return
	}
	s.writeReservation(w, http.StatusOK, &res)
}

// handleRelease gives a hold's units back (owner or admin). The admin is not rate
// limited.
func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	c, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	id, ok := s.reservationID(w, r)
	if !ok {
		return
	}
	if err := withBody(r, decodeEmpty); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.allow(w, r, c, true) {
		return
	}
	res, err := s.Inventory.Release(r.Context(), id, c.customerID)
	if revguard.ErrorCode(err) == revguard.CodeReservationNotFound {
		res, err = s.releaseArchived(r.Context(), id, c.customerID)
	}
	if err != nil {
		s.writeReservationError(w, r, err)
		return
	}
	s.writeReservation(w, http.StatusOK, &res)
}
