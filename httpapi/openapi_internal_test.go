package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIRoutes checks that the OpenAPI document and the router describe the same
// API, both ways: every route of routes.go (the example's included) is an operation of
// the document, and every operation of the document is routed.
func TestOpenAPIRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var documented []string
	for path, item := range doc.Paths {
		if strings.HasSuffix(path, "/") {
			path += "{$}" // OpenAPI's "/example/" is exactly that path
		}
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	s := &Server{Example: &Example{}}
	routed := s.routes(http.NewServeMux())
	slices.Sort(documented)
	slices.Sort(routed)
	for _, r := range routed {
		if _, found := slices.BinarySearch(documented, r); !found {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if _, found := slices.BinarySearch(routed, d); !found {
			t.Errorf("openapi.json has %q, which no route serves", d)
		}
	}
	if len(routed) < 15 {
		t.Fatalf("only %d routes: %v", len(routed), routed)
	}
}

// TestOpenAPIProblemCodes checks that the document's ProblemCode enumeration is the
// problem table's codes.
func TestOpenAPIProblemCodes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				ProblemCode struct {
					Enum []string `json:"enum"`
				} `json:"ProblemCode"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	var table []string
	for c := range problems {
		table = append(table, string(c))
	}
	got := doc.Components.Schemas.ProblemCode.Enum
	slices.Sort(table)
	slices.Sort(got)
	if !slices.Equal(got, table) {
		t.Fatalf("ProblemCode enum %v\nproblem table  %v", got, table)
	}
}

func TestETagMatches(t *testing.T) {
	const tag = `"abc"`
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{`"abc"`, true},
		{`W/"abc"`, true},
		{`"x", "abc"`, true},
		{`*`, true},
		{`"abd"`, false},
		{``, false},
		{`abc`, false},
	} {
		if got := etagMatches(tc.header, tag); got != tc.want {
			t.Errorf("etagMatches(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}
