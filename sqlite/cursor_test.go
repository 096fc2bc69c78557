package sqlite_test

import (
	"encoding/base64"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
)

// FuzzCursor feeds arbitrary cursors and filters to FindOrders: it never panics, and
// anything but a cursor it issued for the same query fails with CodeInvalidRequest.
func FuzzCursor(f *testing.F) {
	l := sqlite.NewLedger(MustOpenDB(f))
	var log revguardtest.EventLog
	for i := range 5 {
		log.Reserve([]string{"a", "b"}[i%2], "c", 1)
	}
	revguardtest.MustApply(f, l, log.Events)
	page, err := l.FindOrders(f.Context(), revguard.OrderFilter{SKU: "a", Limit: 1})
	if err != nil || page.NextCursor == "" {
		f.Fatalf("first page: %v", err)
	}
	issued := map[string]bool{page.NextCursor: true}

	seeds := []struct {
		cursor string
		sku    string
		newest bool
	}{
		{page.NextCursor, "a", false},                                         // valid: the only seed that succeeds
		{page.NextCursor, "b", false},                                         // another query's cursor
		{page.NextCursor, "a", true},                                          // the other order
		{page.NextCursor[1:], "a", false},                                     // truncated at the front
		{page.NextCursor + "A", "a", false},                                   // extended
		{"", "a", false},                                                      // no cursor: the first page
		{"%%%", "a", false},                                                   // not base64url
		{base64.RawURLEncoding.EncodeToString([]byte{1}), "a", false},         // too short
		{base64.RawURLEncoding.EncodeToString(make([]byte, 200)), "a", false}, // too long for a real one
		{base64.RawURLEncoding.EncodeToString(append([]byte{2}, make([]byte, 40)...)), "", false}, // unknown version
	}
	for _, s := range seeds {
		f.Add(s.cursor, s.sku, s.newest)
	}
	f.Fuzz(func(t *testing.T, cursor, sku string, newest bool) {
		p, err := l.FindOrders(t.Context(), revguard.OrderFilter{SKU: sku, Cursor: cursor, NewestFirst: newest, Limit: 2})
		if err == nil {
			if cursor != "" && !(issued[cursor] && sku == "a" && !newest) {
				t.Fatalf("cursor %q accepted for sku %q newest %v", cursor, sku, newest)
			}
			if len(p.Items) > 2 {
				t.Fatalf("%d items for limit 2", len(p.Items))
			}
			return
		}
		if code := revguard.ErrorCode(err); code != revguard.CodeInvalidRequest {
			t.Fatalf("cursor %q: error %v (code %s), want invalid_request", cursor, err, code)
		}
	})
}
