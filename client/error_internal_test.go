package client

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/revenueguard/revguard"
)

// FuzzProblemMemo: decoding an error answer never panics, the memo answers what a
// fresh decode answers, and a document without a code is no problem document.
func FuzzProblemMemo(f *testing.F) {
	for _, s := range []string{
		`{"type":"urn:revguard:problem:sold_out","title":"Sold out","status":409,"detail":"no units left","code":"sold_out"}`,
		`{"status":500,"code":"internal","request_id":"r1"}`, `{"status":500}`, `<html>busy</html>`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	var pm problemMemo // shared by the inputs, as by a sale's answers
	m := Meta{StatusCode: 409, Header: http.Header{"Content-Type": {"application/problem+json"}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantOK := decodeProblem(b)
		for range 2 { // once to remember it, once from memory
			if got, ok := pm.decode(b); ok != wantOK || got != want {
				t.Fatalf("memo decode of %q = %+v, %v; want %+v, %v", b, got, ok, want, wantOK)
			}
		}
		e := pm.errorOf(m, b)
		if e.StatusCode != 409 || e.Detail == "" || (e.Code != "") != wantOK {
			t.Fatalf("error of %q: %+v", b, e)
		}
	})
}

// TestProblemMemoBound: the memo stops growing at its bound and still decodes.
func TestProblemMemoBound(t *testing.T) {
	var pm problemMemo
	for i := range 2 * maxMemo {
		doc := fmt.Sprintf(`{"status":409,"code":"sold_out","detail":"only %d left"}`, i)
		if p, ok := pm.decode([]byte(doc)); !ok || revguard.Code(p.Code) != revguard.CodeSoldOut || p.Detail != fmt.Sprintf("only %d left", i) {
			t.Fatalf("decode(%s) = %+v", doc, p)
		}
	}
	if n := len(*pm.seen.Load()); n != maxMemo {
		t.Errorf("%d documents remembered, want the bound %d", n, maxMemo)
	}
}
