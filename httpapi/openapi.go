package httpapi

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"
)

// openAPIDoc is the OpenAPI 3.1 description of the API this package serves. Tests check
// it both ways: every answer of the end-to-end suites validates against it, and its
// paths and methods are exactly the routes of routes.go.
//
//go:embed openapi.json
var openAPIDoc []byte

// openAPIETag is the document's entity tag: it changes exactly when the document does.
var openAPIETag = func() string {
	sum := sha256.Sum256(openAPIDoc)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}()

// OpenAPI returns a copy of the OpenAPI 3.1 document of the API, as served at
// GET /v1/openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

var cacheOpenAPI = []string{"public, max-age=300"}

// handleOpenAPI serves the document: public, cacheable, rate limited like any public
// request, and 304 to a client whose copy is current.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, r, caller{}, false) {
		return
	}
	h := w.Header()
	h["Etag"] = []string{openAPIETag}
	h["Cache-Control"] = cacheOpenAPI
	if etagMatches(r.Header.Get("If-None-Match"), openAPIETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, http.StatusOK, openAPIDoc)
}

// etagMatches reports whether an If-None-Match value lists etag (or is "*"), comparing
// weakly as RFC 9110 13.1.2 asks.
func etagMatches(ifNoneMatch, etag string) bool {
	for v := range strings.SplitSeq(ifNoneMatch, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || v == etag {
			return true
		}
	}
	return false
}
