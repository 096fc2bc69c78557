package httpapi

import (
	"testing"

	"github.com/revenueguard/revguard"
)

// TestQueryOneAnswer: a query with several bad parameters gets the same problem every
// time (clients switch on its code), not the first one a map's random order meets.
func TestQueryOneAnswer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func() error
	}{
		{"orders", func() error { _, err := parseOrderFilter("sku=bad%20x&limit=0&bogus=1&status=x", false); return err }},
		{"events", func() error { _, err := parseEventsQuery("after=x&from=1&types=nope&z=1", ""); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := tc.parse()
			if first == nil {
				t.Fatal("a bad query was accepted")
			}
			for range 100 {
				err := tc.parse()
				if revguard.ErrorCode(err) != revguard.ErrorCode(first) || err.Error() != first.Error() {
					t.Fatalf("answers differ: %v, then %v", first, err)
				}
			}
		})
	}
}
