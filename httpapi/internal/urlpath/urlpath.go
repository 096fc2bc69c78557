// Package urlpath holds the rules of the API's request paths that the server
// (httpapi) and its test validator (httpapi/openapitest) both apply.
package urlpath

import "strings"

// Canonical reports whether p starts with "/" and has no empty, "." or ".." segment (a
// trailing slash aside): what http.ServeMux serves without a redirect.
func Canonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 1; i <= len(p); {
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			j = len(p) - i
		}
		seg := p[i : i+j]
		last := i+j >= len(p)
		if seg == "." || seg == ".." || seg == "" && !last {
			return false
		}
		i += j + 1
	}
	return true
}

// DotSKU reports whether p is /v1/skus/{sku}[/...] with an empty, "." or ".." SKU id
// and is otherwise canonical: a SKU's route, for an invalid SKU id (400 invalid_sku).
// It returns p with "!" standing for the id, which routes and is no SKU id, and the
// id.
func DotSKU(p string) (standIn, id string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v1/skus/")
	if !ok {
		return "", "", false
	}
	id, tail, slash := strings.Cut(rest, "/")
	if id != "" && id != "." && id != ".." || !Canonical("/_/"+tail) {
		return "", "", false
	}
	standIn = "/v1/skus/!"
	if slash {
		standIn += "/" + tail
	}
	return standIn, id, true
}
