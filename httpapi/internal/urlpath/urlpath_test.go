package urlpath

import "testing"

func TestCanonical(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/v1/skus/a": true, "/v1/skus/": true, "/v1/skus/a.b": true, "/v1/skus/..a": true,
		"": false, "v1": false, "//": false, "/v1//skus": false, "/v1/skus/.": false, "/v1/skus/..": false,
		"/v1/./skus": false, "/v1/../v1/skus": false, "/./": false,
	} {
		if got := Canonical(p); got != want {
			t.Errorf("Canonical(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestDotSKU(t *testing.T) {
	for _, tc := range []struct {
		path, standIn, id string
		ok                bool
	}{
		{"/v1/skus/.", "/v1/skus/!", ".", true},
		{"/v1/skus/..", "/v1/skus/!", "..", true},
		{"/v1/skus//availability", "/v1/skus/!/availability", "", true},
		{"/v1/skus/./", "/v1/skus/!/", ".", true},
		{"/v1/skus/./x/../y", "", "", false}, // dot segments beyond the id
		{"/v1/skus/a/./b", "", "", false},    // a valid id
		{"/v1/./skus/a", "", "", false},      // not a SKU's route
	} {
		standIn, id, ok := DotSKU(tc.path)
		if standIn != tc.standIn || id != tc.id || ok != tc.ok {
			t.Errorf("DotSKU(%q) = %q, %q, %v; want %q, %q, %v", tc.path, standIn, id, ok, tc.standIn, tc.id, tc.ok)
		}
	}
}
