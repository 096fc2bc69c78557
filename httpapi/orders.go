package httpapi

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/revenueguard/revguard"
)

// handleListOrders pages through the ledger, oldest first (admin).
func (s *Server) handleListOrders(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	f, err := parseOrderFilter(r.URL.RawQuery, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeOrders(w, r, f)
}

// handleMyReservations pages through the caller's reservations, newest first.
func (s *Server) handleMyReservations(w http.ResponseWriter, r *http.Request) {
	c, ok := s.requireCustomer(w, r)
	if !ok {
		return
	}
	f, err := parseOrderFilter(r.URL.RawQuery, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f.CustomerID = c.customerID
	f.NewestFirst = true
	if !s.allow(w, r, c, false) {
		return
	}
	s.writeOrders(w, r, f)
}

func (s *Server) writeOrders(w http.ResponseWriter, r *http.Request, f revguard.OrderFilter) {
	page, err := s.Ledger.FindOrders(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	bp := getBuf()
	*bp = append(appendOrderPage((*bp)[:0], &page), '\n')
	writeJSON(w, http.StatusOK, *bp)
	putBuf(bp)
}

// eachQueryParam calls f with each parameter of a query, in the order of their names
// (one request, one answer), and returns f's first error; a malformed query or a
// parameter given more than once is invalid_request.
func eachQueryParam(rawQuery string, f func(name, v string) error) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return revguard.Errorf(revguard.CodeInvalidRequest, "the query string is malformed")
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vals := q[name]
		if len(vals) > 1 {
			return revguard.Errorf(revguard.CodeInvalidRequest, "query parameter %s given more than once", quoteForDetail([]byte(name)))
		}
		if err := f(name, vals[0]); err != nil {
			return err
		}
	}
	return nil
}

// parseOrderFilter reads the query of a ledger listing strictly: each parameter at most
// once, no unknown parameter (customer_id only where withCustomer), every value valid.
// An empty cursor means the first page.
func parseOrderFilter(rawQuery string, withCustomer bool) (revguard.OrderFilter, error) {
	var f revguard.OrderFilter
	err := eachQueryParam(rawQuery, func(name, v string) error {
		switch name {
		case "sku":
			if !revguard.ValidSKUID(v) {
				return revguard.Errorf(revguard.CodeInvalidSKU, "sku must be 1 to 128 characters from [A-Za-z0-9._:-], other than . and ..")
			}
			f.SKU = v
		case "customer_id":
			if !withCustomer {
				return revguard.Errorf(revguard.CodeInvalidRequest, "customer_id is not a parameter of this endpoint: it is always the caller")
			}
			if !revguard.ValidCustomerID(v) {
				return revguard.Errorf(revguard.CodeInvalidRequest, "customer_id must be 1 to %d printable characters", revguard.MaxCustomerIDLen)
			}
			f.CustomerID = v
		case "status":
			if !revguard.Status(v).Valid() {
				return revguard.Errorf(revguard.CodeInvalidRequest, "status must be one of held, confirmed, released, expired")
			}
			f.Status = revguard.Status(v)
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > revguard.MaxOrderLimit {
				return revguard.Errorf(revguard.CodeInvalidRequest, "limit must be an integer from 1 to %d", revguard.MaxOrderLimit)
			}
			f.Limit = n
		case "cursor":
			f.Cursor = v
		default:
			return revguard.Errorf(revguard.CodeInvalidRequest, "unknown query parameter %s", quoteForDetail([]byte(name)))
		}
		return nil
	})
	if err != nil {
		return f, err
	}
	if f.Limit == 0 {
		f.Limit = revguard.DefaultOrderLimit
	}
	return f, nil
}
