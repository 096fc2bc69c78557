package httpapi

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/webhook"
)

// FuzzDecodeWebhook checks the decoder of POST /v1/webhooks: it never panics, every
// refusal is invalid_request, and what it accepts is valid: an http(s) URL within the
// limit, known change types without repeats, a usable secret or none.
func FuzzDecodeWebhook(f *testing.F) {
	for _, s := range append(slices.Clone(decodeSeeds),
		// Seeds: valid bodies, then each malformation.
		`{"url":"https://shop.example/hooks"}`,
		`{"url":"http://127.0.0.1:9000/h","types":["sku.sold_out","reservation.held"]}`,
		`{"url":"https://x.example/","types":[],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}`,
		`{"url":"https://x.example/","types":null,"secret":null}`,
		`{"url":"https://x.example/","types":["sku.sold_out",]}`, `{"url":"https://x.example/","types":[1]}`,
		`{"url":"https://x.example/","types":["a"`, `{"url":"https://x.example/","types":[`,
		`{"url":"ftp://x/"}`, `{"url":"https://x.example/#f"}`, `{"url":"//x"}`, `{"url":""}`,
		`{"url":"http://x:99999/"}`, `{"url":"http://x:0/"}`, `{"url":"http://x/a b"}`, `{"url":"http://:1/"}`,
		`{"url":"http://x:/"}`, `{"url":"https://x.example/#"}`,
		`{"url":"https://x.example/","secret":"whsec_!!"}`, `{"url":"https://x.example/","types":{"a":1}}`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeWebhook(body)
		if err != nil {
			if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("decodeWebhook(%q): %v, want invalid_request", body, err)
			}
			return
		}
		u, err := url.Parse(req.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || len(req.URL) > revguard.MaxWebhookURLLen ||
			strings.ContainsFunc(req.URL, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("decodeWebhook(%q) accepted url %q", body, req.URL)
		}
		if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				t.Fatalf("decodeWebhook(%q) accepted the port of %q", body, req.URL)
			}
		}
		if strings.Contains(req.URL, "#") || u.User != nil {
			t.Fatalf("decodeWebhook(%q) accepted a fragment or credentials in %q", body, req.URL)
		}
		seen := map[revguard.ChangeType]bool{}
		for _, ty := range req.Types {
			if !ty.Valid() || seen[ty] {
				t.Fatalf("decodeWebhook(%q) accepted types %v", body, req.Types)
			}
			seen[ty] = true
		}
		if req.Secret != "" {
			if _, err := webhook.ParseSecret(req.Secret); err != nil {
				t.Fatalf("decodeWebhook(%q) accepted secret %q", body, req.Secret)
			}
		}
	})
}

// TestParseEventsQueryTypes: types is a comma-separated list of change types; empty, or
// absent, is every type (as a webhook's empty types); an unknown or empty member is 400.
func TestParseEventsQueryTypes(t *testing.T) {
	for _, tt := range []struct {
		query string
		want  []revguard.ChangeType // nil: every type
		err   bool
	}{
		{"", nil, false},
		{"types=", nil, false},
		{"types=sku.sold_out", []revguard.ChangeType{"sku.sold_out"}, false},
		{"types=sku.sold_out,reservation.held", []revguard.ChangeType{"sku.sold_out", "reservation.held"}, false},
		{"types=sku.sold_out,", nil, true},
		{"types=,", nil, true},
		{"types=sku.deleted", nil, true},
	} {
		q, err := parseEventsQuery(tt.query, "")
		if (err != nil) != tt.err {
			t.Errorf("parseEventsQuery(%q): %v, want error %v", tt.query, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if (q.types == nil) != (tt.want == nil) || len(q.types) != len(tt.want) {
			t.Errorf("parseEventsQuery(%q) types %v, want %v", tt.query, q.types, tt.want)
		}
		for _, ty := range tt.want {
			if !q.types[ty] {
				t.Errorf("parseEventsQuery(%q) types %v, want %v", tt.query, q.types, tt.want)
			}
		}
	}
}

// FuzzParseEventsQuery checks the query and Last-Event-ID of the event stream: no
// panic, refusals are invalid_request, and an accepted position is what was sent.
func FuzzParseEventsQuery(f *testing.F) {
	// Seeds: valid queries and ids, then malformed ones.
	for _, s := range [][2]string{
		{"", ""}, {"after=evt_0", ""}, {"after=42", ""}, {"types=sku.sold_out,reservation.held", "evt_7"},
		{"", "18446744073709551615"}, {"", "18446744073709551616"}, {"after=evt_", ""}, {"after=+1", ""},
		{"after=1&after=2", ""}, {"types=", ""}, {"x=1", ""}, {"%zz", ""}, {"", "evt_-1"}, {"", "evt_ 1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, query, lastID string) {
		q, err := parseEventsQuery(query, lastID)
		if err != nil {
			if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("parseEventsQuery(%q, %q): %v, want invalid_request", query, lastID, err)
			}
			return
		}
		if lastID != "" {
			if n, ok := parseChangeID(lastID); !ok || n != q.after || !q.hasAft || !strings.HasSuffix(lastID, revguard.ChangeID(n)[4:]) {
				t.Fatalf("parseEventsQuery(%q, %q) = %+v", query, lastID, q)
			}
		}
		for ty := range q.types {
			if !ty.Valid() {
				t.Fatalf("parseEventsQuery(%q) accepted type %q", query, ty)
			}
		}
	})
}
