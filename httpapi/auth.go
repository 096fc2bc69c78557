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
		s.refuseUnauthenticated(w, r, "", nil, "missing Authorization: Bearer <token>")
		return caller{}, false
	}
	token, ok := bearerToken(vals)
	if !ok {
		challenge := challengeInvalidToken
		if len(vals) == 1 && !hasBearerScheme(vals[0]) {
			challenge = challengeBare
		}
		s.refuseUnauthenticated(w, r, "", challenge, "the Authorization header must be Bearer <token>")
		return caller{}, false
	}
	c, err := s.identify(r.Context(), token)
	if err != nil {
		s.writeIdentifyError(w, r, err, "")
		return caller{}, false
	}
	return c, true
}

// writeIdentifyError answers a failed identify from the client address ip ("" for
// r's): 401 for a token of no live session, 403 for a dashboard link's token, else the
// store's error.
func (s *Server) writeIdentifyError(w http.ResponseWriter, r *http.Request, err error, ip string) {
	switch revguard.ErrorCode(err) {
	case revguard.CodeUnauthenticated:
		s.refuseUnauthenticated(w, r, ip, challengeInvalidToken, "the token is unknown, expired or revoked")
		return
	case revguard.CodeForbidden: // a dashboard link's token: counted as a wrong token is
		if s.limitRefused(w, r, ip) {
			return
		}
		w.Header()["Www-Authenticate"] = challengeInsufficientScope
	}
	s.writeError(w, r, err)
}

// refuseUnauthenticated answers 401 with detail and the WWW-Authenticate challenge
// (nil: writeProblem's bare one), or 429 when the client address ip ("" for r's) is
// over its limit (limitRefused).
func (s *Server) refuseUnauthenticated(w http.ResponseWriter, r *http.Request, ip string, challenge []string, detail string) {
	if s.limitRefused(w, r, ip) {
		return
	}
	if challenge != nil {
		w.Header()["Www-Authenticate"] = challenge
	}
	s.writeProblem(w, r, revguard.CodeUnauthenticated, detail)
}

// identify returns the caller of a well-formed bearer token: the admin, or the
// customer of a live session. It fails with CodeUnauthenticated for a token of no
// live session, or with the store's error.
func (s *Server) identify(ctx context.Context, token string) (caller, error) {
	h := revguard.HashSessionToken(token) // once, for the admin check and the session
	if s.adminHashed(h) {
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
		if _, live := s.dashboardToken(token); live && revguard.ErrorCode(err) == revguard.CodeUnauthenticated {
			// The wrong kind of token, not an unknown one (docs/api.md): 403.
			return caller{}, errDashboardOnly
		}
		return caller{}, err
	}
	return caller{customerID: sess.CustomerID, token: token}, nil
}

// errDashboardOnly refuses a dashboard link's token anywhere but the dashboard's
// stream. Shared: never modified.
var errDashboardOnly = &revguard.Error{Code: revguard.CodeForbidden, Detail: "a dashboard link's token opens only the dashboard's stream"}

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
		if s.limitRefused(w, r, "") {
			return false
		}
		w.Header()["Www-Authenticate"] = challengeInsufficientScope
		s.writeProblem(w, r, revguard.CodeForbidden, "this endpoint needs the admin token")
		return false
	}
	return s.getBodyAllowed(w, r)
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
	return c, s.getBodyAllowed(w, r)
}

// getBodyAllowed checks the body's headers of a GET (or HEAD), which reads no body:
// docs/api.md makes a non-empty body that is not JSON 415 on every route. A route that
// takes a token calls it once the caller is allowed, as withBody runs after the token
// on the others; a public one first (routes). It writes the 415 and reports false.
func (s *Server) getBodyAllowed(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength == 0 || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return true
	}
	if err := checkBodyHeaders(r); err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// refuseAdmin answers the admin on a customer-only endpoint: 403 forbidden.
func (s *Server) refuseAdmin(w http.ResponseWriter, r *http.Request) {
	w.Header()["Www-Authenticate"] = challengeInsufficientScope
	s.writeProblem(w, r, revguard.CodeForbidden, "this endpoint needs a customer session token")
}

// limitRefused takes a token from the bucket of the client address ip ("" for r's) for
// a request refused before the rate limits run: no token or a bad one, a customer on an
// admin endpoint, a path or method the API does not serve. The IP limit bounds every
// request but the admin's (docs/api.md), so guessing tokens or probing paths from one
// address is bounded too. When the bucket is empty it answers 429 instead and reports
// true; on reserve, whose order of checks puts the session first, the request is only
// counted and keeps its 401. A limiter that fails changes nothing: the refusal is
// answered as it was.
func (s *Server) limitRefused(w http.ResponseWriter, r *http.Request, ip string) bool {
	if s.IPLimiter == nil {
		return false
	}
	if ip == "" {
		ip = s.clientIP(r)
	}
	if r.Pattern == reservePattern {
		markIPCounted(w)
		_, _, _ = s.IPLimiter.Allow(r.Context(), ipBucket(ip)) // counted; the answer stays the 401
		return false
	}
	err := s.limitIP(r.Context(), w, ip)
	if revguard.ErrorCode(err) != revguard.CodeRateLimited {
		return false
	}
	s.writeError(w, r, err)
	return true
}

// limitUnserved is limitRefused for a request of a path or method the API does not
// serve, which is answered before it is authenticated: the admin's is not counted.
func (s *Server) limitUnserved(w http.ResponseWriter, r *http.Request) bool {
	return s.IPLimiter != nil && !s.isAdmin(r) && s.limitRefused(w, r, "")
}

// isAdmin reports whether r carries the admin token.
func (s *Server) isAdmin(r *http.Request) bool {
	token, ok := bearerToken(r.Header["Authorization"])
	return ok && s.adminHashed(revguard.HashSessionToken(token))
}

// adminHashed reports whether h is the hash of the admin token, in constant time
// (neither its content nor its length leaks).
func (s *Server) adminHashed(h [32]byte) bool {
	return s.AdminToken != "" && subtle.ConstantTimeCompare(h[:], s.adminHash[:]) == 1
}
