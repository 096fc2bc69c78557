package httpapi_test

import (
	"bytes"
	"testing"

	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/httpapi/openapitest"
)

// TestOpenAPIDocument checks that the document is valid OpenAPI 3.1 that a maintained
// validator (kin-openapi) loads, and that its patterns are the server's form.
func TestOpenAPIDocument(t *testing.T) {
	d := openapitest.MustLoad(t)
	if v := d.T.OpenAPI; v != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", v)
	}
	for _, want := range []string{"POST /v1/skus/{sku}/reservations", "GET /v1/openapi.json", "GET /example/{$}"} {
		found := false
		for _, p := range d.Patterns() {
			found = found || p == want
		}
		if !found {
			t.Errorf("Patterns() lacks %q: %v", want, d.Patterns())
		}
	}
}

// TestOpenAPIServed checks GET /v1/openapi.json: the embedded document, public and
// cacheable, and 304 for a client whose copy is current.
func TestOpenAPIServed(t *testing.T) { eachBackend(t, testOpenAPIServed) }

func testOpenAPIServed(t *testing.T, b backend) {
	e := mustOpenEnv(t, envOptions{backend: b})
	r := e.do(req{Method: "GET", Path: "/v1/openapi.json"})
	if r.Status != 200 || !bytes.Equal(r.Body, httpapi.OpenAPI()) {
		t.Fatalf("status %d, body of %d bytes, want the document", r.Status, len(r.Body))
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
	etag := r.Header.Get("ETag")
	if len(etag) < 10 || etag[0] != '"' {
		t.Fatalf("ETag %q", etag)
	}
	r = e.do(req{Method: "GET", Path: "/v1/openapi.json", Header: map[string]string{"If-None-Match": etag}})
	if r.Status != 304 || len(r.Body) != 0 || r.Header.Get("ETag") != etag {
		t.Fatalf("If-None-Match: status %d, ETag %q, body %q", r.Status, r.Header.Get("ETag"), r.Body)
	}
	r = e.do(req{Method: "GET", Path: "/v1/openapi.json", Header: map[string]string{"If-None-Match": `"stale"`}})
	if r.Status != 200 {
		t.Fatalf("stale If-None-Match: status %d", r.Status)
	}
}
