package httpapi

import (
	"net/http"

	"github.com/revenueguard/revguard"
)

// skuID returns the {sku} path value, or writes 400 invalid_sku.
func (s *Server) skuID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("sku")
	if dot, ok := r.Context().Value(dotSKU{}).(string); ok {
		id = dot // a stand-in routed the request (dotSKURequest)
	}
	if !revguard.ValidSKUID(id) {
		s.writeProblem(w, r, revguard.CodeInvalidSKU, "a SKU id is 1 to 128 characters from [A-Za-z0-9._:-]")
		return "", false
	}
	return id, true
}

// handlePutSKU creates a SKU (201) or replaces its settings (200).
func (s *Server) handlePutSKU(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	id, ok := s.skuID(w, r)
	if !ok {
		return
	}
	var u revguard.SKUUpdate
	err := withBody(r, func(b []byte) (err error) {
		u, err = decodeSKU(b)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sku, created, err := s.Inventory.PutSKU(r.Context(), id, u)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/skus/"+id)
	}
	s.writeSKU(w, status, &sku)
}

// handleGetSKU answers the exact state of a SKU.
func (s *Server) handleGetSKU(w http.ResponseWriter, r *http.Request) {
	if !s.requireAdmin(w, r) {
		return
	}
	id, ok := s.skuID(w, r)
	if !ok {
		return
	}
	sku, err := s.Inventory.FindSKU(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeSKU(w, http.StatusOK, &sku)
}

func (s *Server) writeSKU(w http.ResponseWriter, status int, sku *revguard.SKU) {
	bp := getBuf()
	*bp = append(appendSKU((*bp)[:0], sku), '\n')
	writeJSON(w, status, *bp)
	putBuf(bp)
}

// handleAvailability answers the public, cacheable view of a SKU.
func (s *Server) handleAvailability(w http.ResponseWriter, r *http.Request) {
	id, ok := s.skuID(w, r)
	if !ok {
		return
	}
	if !s.allow(w, r, caller{}, false) {
		return
	}
	av, err := s.Inventory.Availability(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header()["Cache-Control"] = cacheOneSecond
	bp := getBuf()
	*bp = append(appendAvailability((*bp)[:0], &av), '\n')
	writeJSON(w, http.StatusOK, *bp)
	putBuf(bp)
}

var cacheOneSecond = []string{"max-age=1"}
