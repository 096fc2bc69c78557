package httpapi

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/revenueguard/revguard"
)

// maxTokenLen bounds a bearer token; session tokens are 43 characters.
const maxTokenLen = 1024

// hashedSessions is a session store that takes the token's hash along with the token
// (inproc.SessionCache), so that a request's token is hashed once.
type hashedSessions interface {
	FindSessionHashed(ctx context.Context, token string, h [32]byte) (revguard.Session, error)
}

// caller is an authenticated client: the admin, or a customer with a session.
type caller struct {
	admin      bool
	customerID string // "" for the admin
	token      string // the bearer token as sent
}

// The WWW-Authenticate challenges of RFC 6750 (3.1): a bare one when no bearer token was
// sent (no header, or another scheme such as Basic), one naming invalid_token when a
// bearer token was sent but is malformed or refused, and insufficient_scope on a 403
// (a valid token without the right to this endpoint).
var (
	challengeBare              = []string{"Bearer"}
	challengeInvalidToken      = []string{`Bearer error="invalid_token"`}
	challengeInsufficientScope = []string{`Bearer error="insufficient_scope"`}
)

// authenticate identifies the caller from "Authorization: Bearer <token>": the admin
// token (compared in constant time through hashes, so neither content nor length
// leaks), else a live session. On failure it has written the 401 (or the store's error).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (caller, bool) {
	vals := r.Header["Authorization"]
	if len(vals) == 0 {
		s.writeProblem(w, r, revguard.CodeUnauthenticated, "missing Authorization: Bearer <token>")
		return caller{}, false
	}
	token, ok := bearerToken(vals)
	if !ok {
		if len(vals) == 1 && !hasBearerScheme(vals[0]) {
			w.Header()["Www-Authenticate"] = challengeBare
		} else {
			w.Header()["Www-Authenticate"] = challengeInvalidToken
		}
		s.writeProblem(w, r, revguard.CodeUnauthenticated, "the Authorization header must be Bearer <token>")
		return caller{}, false
	}
	c, err := s.identify(r.Context(), token)
	if err != nil {
		s.writeIdentifyError(w, r, err)
		return caller{}, false
	}
	return c, true
}

// writeIdentifyError answers a failed identify: 401 for a token of no live session,
// else the store's error.
func (s *Server) writeIdentifyError(w http.ResponseWriter, r *http.Request, err error) {
	if revguard.ErrorCode(err) == revguard.CodeUnauthenticated {
		w.Header()["Www-Authenticate"] = challengeInvalidToken
		s.writeProblem(w, r, revguard.CodeUnauthenticated, "the token is unknown, expired or revoked")
		return
	}
	s.writeError(w, r, err)
}

// identify returns the caller of a well-formed bearer token: the admin, or the
// customer of a live session. It fails with CodeUnauthenticated for a token of no
// live session, or with the store's error.
func (s *Server) identify(ctx context.Context, token string) (caller, error) {
	h := revguard.HashSessionToken(token) // once, for the admin check and the session
	if s.AdminToken != "" && subtle.ConstantTimeCompare(h[:], s.adminHash[:]) == 1 {
		return caller{admin: true, token: token}, nil
	}
	var sess revguard.Session
	var err error
	if hs, ok := s.Sessions.(hashedSessions); ok {
		sess, err = hs.FindSessionHashed(ctx, token, h)
	} else {
		sess, err = s.Sessions.FindSession(ctx, token)
	}
	if err != nil {
		return caller{}, err
	}
	return caller{customerID: sess.CustomerID, token: token}, nil
}

// hasBearerScheme reports whether an Authorization value uses the Bearer scheme
// (case-insensitive), whatever follows it.
func hasBearerScheme(v string) bool {
	const scheme = "bearer"
	return len(v) >= len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) &&
		(len(v) == len(scheme) || v[len(scheme)] == ' ')
}

// bearerToken extracts the token of a single "Bearer <token>" header (the scheme is
// case-insensitive, RFC 9110 11.1).
func bearerToken(vals []string) (string, bool) {
	if len(vals) != 1 {
		return "", false
	}
	return parseBearer(vals[0])
}

// parseBearer extracts the token of one Authorization value "Bearer <token>".
func parseBearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	token := strings.TrimLeft(v[len(scheme):], " ")
	if token == "" || len(token) > maxTokenLen {
		return "", false
	}
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] > '~' {
			return "", false
		}
	}
	return token, true
}

// requireAdmin authenticates an admin endpoint: a customer gets 403 forbidden.
func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request) bool {
	c, ok := s.authenticate(w, r)
	if !ok {
		return false
	}
	if !c.admin {
		w.Header()["Www-Authenticate"] = challengeInsufficientScope
		s.writeProblem(w, r, revguard.CodeForbidden, "this endpoint needs the admin token")
		return false
	}
	return true
}

// requireCustomer authenticates a customer-only endpoint: the admin gets 403 forbidden.
func (s *Server) requireCustomer(w http.ResponseWriter, r *http.Request) (caller, bool) {
	c, ok := s.authenticate(w, r)
	if !ok {
		return c, false
	}
	if c.admin {
		s.refuseAdmin(w, r)
		return c, false
	}
	return c, true
}

// refuseAdmin answers the admin on a customer-only endpoint: 403 forbidden.
func (s *Server) refuseAdmin(w http.ResponseWriter, r *http.Request) {
	w.Header()["Www-Authenticate"] = challengeInsufficientScope
	s.writeProblem(w, r, revguard.CodeForbidden, "this endpoint needs a customer session token")
}
