package httpapi

import (
	"net/http"

	"github.com/revenueguard/revguard"
)

// handleCreateSession issues a customer session (admin: the merchant's backend calls it
// for a customer it has authenticated).
func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	var req sessionRequest
	err := withBody(r, func(b []byte) (err error) {
		req, err = decodeSession(b)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	token, sess, err := s.Sessions.CreateSession(r.Context(), req.CustomerID, req.TTL)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeSession(w, token, sess)
}

// writeSession answers 201 with a new session.
func writeSession(w http.ResponseWriter, token string, sess revguard.Session) {
	bp := getBuf()
	b := append((*bp)[:0], `{"token":`...)
	b = appendString(b, token)
	b = append(b, `,"customer_id":`...)
	b = appendString(b, sess.CustomerID)
	b = append(b, `,"expires_at":`...)
	b = appendTime(b, sess.ExpiresAt)
	b = append(b, "}\n"...)
	// A credential must not be stored by caches (RFC 6749 5.1 does the same).
	w.Header()["Cache-Control"] = noStore
	writeJSON(w, http.StatusCreated, b)
	*bp = b
	putBuf(bp)
}

var noStore = []string{"no-store"}

// handleLogout revokes the caller's session token.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	c, ok := s.requireCustomer(w, r)
	if !ok {
		return
	}
	// No body is needed, but one that is sent follows the API's rules (an empty JSON
	// object at most), as release's does: a malformed request logs nobody out.
	if err := withBody(r, decodeEmpty); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.allow(w, r, c, false) {
		return
	}
	if err := s.Sessions.DeleteSession(r.Context(), c.token); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
