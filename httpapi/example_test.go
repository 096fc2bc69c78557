package httpapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
)

// TestExample checks the storefront example's endpoints: absent by default; with
// Server.Example the page (with its site key, widget script and CSP), its files, and
// the demo session endpoint, which issues working customer sessions to anyone, rate
// limited like any public request. The page itself runs in Chromium in cmd/revguard's
// TestStorefrontExample.
func TestExample(t *testing.T) { eachBackend(t, testExample) }

func testExample(t *testing.T, b backend) {
	t.Run("OffByDefault", func(t *testing.T) {
		e := mustOpenEnv(t, envOptions{backend: b})
		e.do(req{Method: "GET", Path: "/example/"}).wantProblem(t, 404, revguard.CodeNotFound)
		e.do(req{Method: "POST", Path: "/example/session"}).wantProblem(t, 404, revguard.CodeNotFound)
	})
	e := mustOpenEnv(t, envOptions{backend: b, clock: true, ipRate: revguard.Rate{N: 20, Per: time.Minute}, edit: func(s *httpapi.Server) {
		s.Example = &httpapi.Example{SiteKey: "1x00000000000000000000AA", WidgetScript: httpapi.CloudflareWidgetScript}
	}})
	t.Run("Page", func(t *testing.T) {
		e := e.with(t)
		r := e.do(req{Method: "GET", Path: "/example/"})
		body := string(r.Body)
		if r.Status != 200 || !strings.Contains(body, `data-sitekey="1x00000000000000000000AA"`) ||
			!strings.Contains(body, `data-widget-script="`+httpapi.CloudflareWidgetScript+`"`) || !strings.Contains(body, `data-sku="example-sku"`) {
			t.Fatalf("page %d: %s", r.Status, body)
		}
		csp := r.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self' https://challenges.cloudflare.com;") || !strings.Contains(csp, "connect-src 'self'") {
			t.Fatalf("CSP %q", csp)
		}
	})
	t.Run("Files", func(t *testing.T) {
		e := e.with(t)
		for path, ctype := range map[string]string{
			"/example/app.js":           "text/javascript; charset=utf-8",
			"/example/turnstile-dev.js": "text/javascript; charset=utf-8",
			"/example/style.css":        "text/css; charset=utf-8",
			"/example/product.svg":      "image/svg+xml",
		} {
			if r := e.do(req{Method: "GET", Path: path}); r.Status != 200 || r.Header.Get("Content-Type") != ctype || len(r.Body) < 100 {
				t.Errorf("%s: %d %q, %d bytes", path, r.Status, r.Header.Get("Content-Type"), len(r.Body))
			}
		}
		for _, path := range []string{"/example/index.html", "/example/nope.js", "/example/session"} {
			e.do(req{Method: "GET", Path: path}).wantProblem(t, 404, revguard.CodeNotFound)
		}
	})
	t.Run("Session", func(t *testing.T) {
		e := e.with(t)
		var s struct {
			Token      string `json:"token"`
			CustomerID string `json:"customer_id"`
			ExpiresAt  string `json:"expires_at"`
		}
		r := e.do(req{Method: "POST", Path: "/example/session"})
		r.json(t, 201, &s)
		if !strings.HasPrefix(s.CustomerID, "example-") || s.Token == "" || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("session %+v", s)
		}
		if r := e.do(req{Method: "POST", Path: "/example/session", Body: `{}`}); r.Status != 201 {
			t.Fatalf("with {}: %d %s", r.Status, r.Body)
		}
		// The session is a customer's: it reads its (empty) reservations and may not
		// act as the admin.
		e.do(req{Method: "GET", Path: "/v1/me/reservations", Token: s.Token}).json(t, 200, &orderPage{})
		e.do(req{Method: "GET", Path: "/v1/orders", Token: s.Token}).wantProblem(t, 403, revguard.CodeForbidden)
		e.do(req{Method: "POST", Path: "/example/session", Body: `{"customer_id":"me"}`}).wantProblem(t, 400, revguard.CodeInvalidRequest)
	})
	t.Run("ErrRateLimited", func(t *testing.T) {
		e := e.with(t)
		var last *response
		for range 25 {
			if last = e.do(req{Method: "POST", Path: "/example/session"}); last.Status == 429 {
				break
			}
		}
		last.wantProblem(t, 429, revguard.CodeRateLimited)
	})
}
