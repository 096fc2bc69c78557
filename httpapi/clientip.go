package httpapi

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
)

// clientIP returns the address of the client: the socket's peer, or, when that peer is
// a trusted proxy, the rightmost address of X-Forwarded-For that is not a trusted proxy
// (addresses left of it could be forged by the client).
func (s *Server) clientIP(r *http.Request) string {
	return s.clientIPOf(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
}

// clientIPOf is clientIP of a request from remoteAddr with the X-Forwarded-For fields
// hops (read only when the peer is a trusted proxy).
func (s *Server) clientIPOf(remoteAddr string, hops []string) string {
	host := remoteHost(remoteAddr)
	if len(s.TrustedProxies) == 0 {
		return host
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !s.trusted(peer.Unmap()) {
		return host
	}
	client := peer.Unmap()
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return client.String() // a malformed hop: trust nothing left of it
			}
			client = a.Unmap()
			if !s.trusted(client) {
				return client.String()
			}
		}
	}
	return client.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// remoteHost strips the port (and IPv6 brackets) from a RemoteAddr without allocating.
func remoteHost(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	host := addr[:i]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

// rateLimit takes a token from the client IP's bucket, then from the customer's. When
// either is empty it sets Retry-After (whole seconds, rounded up, at least 1) and fails
// with CodeRateLimited; the request must then change nothing. The IP bucket goes first so
// that a crowd behind one address cannot drain its customers' own buckets.
func (s *Server) rateLimit(ctx context.Context, w http.ResponseWriter, customerID, ip string) error {
	if err := s.limitIP(ctx, w, ip); err != nil {
		return err
	}
	if s.CustomerLimiter != nil && customerID != "" {
		if err := limit(ctx, w, s.CustomerLimiter, customerID, "customer"); err != nil {
			return err
		}
	}
	return nil
}

// limitIP takes a token from the client IP's bucket. docs/api.md's --rate-limit-ip bounds
// every request of a client address, so reads (availability, a reservation, the caller's
// list) and logout go through it too; only the admin (the merchant's backend, which
// issues every session from a few addresses) is exempt.
func (s *Server) limitIP(ctx context.Context, w http.ResponseWriter, ip string) error {
	if s.IPLimiter == nil {
		return nil
	}
	markIPCounted(w)
	return limit(ctx, w, s.IPLimiter, ipBucket(ip), "client address")
}

// ipBucket is the key of a client address's bucket: an IPv4 address, or an IPv6
// address's /64, which one household or host is given whole, so that stepping
// through its addresses does not multiply the limit.
func ipBucket(ip string) string {
	if strings.IndexByte(ip, ':') < 0 {
		return ip
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4In6() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// ipCounter is a writer that records whether its request drew on its client address's
// bucket (limitIP), so that a refusal for the request's shape (limitShape) draws on it
// once at most. The server's writers all are.
type ipCounter interface {
	ipCounted() *bool
}

// markIPCounted records on w that its request drew on its address's bucket.
func markIPCounted(w http.ResponseWriter) {
	if c, ok := w.(ipCounter); ok {
		*c.ipCounted() = true
	}
}

// limitShape draws on the client address's bucket for a request refused for its shape
// (a malformed SKU id, body, query or header: 400 or 415) that did not draw on it
// before the refusal: the IP limit bounds every request but the admin's (docs/api.md),
// so malformed requests from one address are bounded too. As limitRefused, it answers
// 429 instead and reports true when the bucket is empty, except on reserve, whose
// order of checks puts the request's shape before the limits: there the request is
// only counted.
func (s *Server) limitShape(w http.ResponseWriter, r *http.Request) bool {
	c, ok := w.(ipCounter)
	if !ok || s.IPLimiter == nil || *c.ipCounted() || s.isAdmin(r) {
		return false
	}
	return s.limitRefused(w, r, "")
}

// allow applies the rate limits to a request of c outside the hot path: the IP bucket
// for every request, the customer's too when customer is set (confirm, release). The
// admin is exempt. When refused it has written the 429 and returns false.
func (s *Server) allow(w http.ResponseWriter, r *http.Request, c caller, customer bool) bool {
	if c.admin {
		return true
	}
	var err error
	if customer {
		err = s.rateLimit(r.Context(), w, c.customerID, s.clientIP(r))
	} else {
		err = s.limitIP(r.Context(), w, s.clientIP(r))
	}
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

func limit(ctx context.Context, w http.ResponseWriter, l revguard.RateLimiter, key, what string) error {
	ok, retry, err := l.Allow(ctx, key)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	secs := int64((retry + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header()["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
	return revguard.Errorf(revguard.CodeRateLimited, "too many requests for this %s; retry in %d s", what, secs)
}
