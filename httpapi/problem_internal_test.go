package httpapi

import (
	"net/http"
	"testing"

	"github.com/revenueguard/revguard"
)

// TestProblemTableCoversCodes checks that every revguard.Code has a status and a title,
// that the table has nothing else, and that each status is an error status.
func TestProblemTableCoversCodes(t *testing.T) {
	for _, c := range revguard.Codes {
		p, ok := problems[c]
		if !ok {
			t.Errorf("code %q is missing from the problem table", c)
			continue
		}
		if p.status < 400 || p.status > 599 || p.title == "" || http.StatusText(p.status) == "" {
			t.Errorf("code %q maps to %d %q", c, p.status, p.title)
		}
	}
	if len(problems) != len(revguard.Codes) {
		t.Errorf("problem table has %d entries, revguard.Codes has %d", len(problems), len(revguard.Codes))
	}
}
