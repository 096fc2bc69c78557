package httpapi

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"time"

	"github.com/revenueguard/revguard"
)

// Example configures the storefront example (Server.Example): a page under /example/
// that shows what a shop builds in front of the API. It is a demonstration: its
// session endpoint issues a session to anyone, which a real shop does only in its own
// backend, for a customer it has authenticated.
type Example struct {
	// SiteKey is the Turnstile site key the widget renders with. Cloudflare's test
	// site keys work for development.
	SiteKey string

	// WidgetScript is the URL of Turnstile's api.js. DevWidgetScript, the default,
	// is a stand-in served with the page, which issues the dummy token of
	// Cloudflare's test site keys and loads nothing from elsewhere.
	WidgetScript string

	// SKU is the SKU the page shows when its URL has no ?sku=.
	SKU string

	// SessionTTL is the life of the sessions the page gets; 0 means an hour.
	SessionTTL time.Duration
}

// The widget scripts: Cloudflare's, and the stand-in shipped with the page.
const (
	CloudflareWidgetScript = "https://challenges.cloudflare.com/turnstile/v0/api.js"
	DevWidgetScript        = "/example/turnstile-dev.js"
)

// DefaultExampleSKU is the SKU the example page shows by default.
const DefaultExampleSKU = "example-sku"

//go:embed example
var exampleFiles embed.FS

var exampleTemplate = template.Must(template.ParseFS(exampleFiles, "example/index.html"))

// exampleTypes are the media types of the files served under /example/.
var exampleTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
}

var (
	htmlContentType = []string{"text/html; charset=utf-8"}
	noCache         = []string{"no-cache"}
)

// handleExamplePage renders the page with the site key, the widget script and the SKU.
// Its Content-Security-Policy lets scripts and frames come only from this server and
// the widget script's origin.
func (s *Server) handleExamplePage(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, r, caller{}, false) {
		return
	}
	ex := s.exampleConfig()
	var buf bytes.Buffer
	err := exampleTemplate.Execute(&buf, map[string]string{
		"SiteKey": ex.SiteKey, "WidgetScript": ex.WidgetScript, "SKU": ex.SKU,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	src := "'self'"
	if u, err := url.Parse(ex.WidgetScript); err == nil && u.Host != "" {
		src += " " + u.Scheme + "://" + u.Host
	}
	h := w.Header()
	h["Content-Security-Policy"] = []string{"default-src 'self'; script-src " + src + "; frame-src " + src +
		"; connect-src 'self'; img-src 'self' data:; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"}
	h["Cache-Control"] = noCache
	h["Content-Type"] = htmlContentType
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

// handleExampleAsset serves the page's script, style sheet and widget stand-in.
func (s *Server) handleExampleAsset(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, r, caller{}, false) {
		return
	}
	name := r.PathValue("file")
	ctype, ok := exampleTypes[path.Ext(name)]
	var b []byte
	if ok {
		var err error
		b, err = fs.ReadFile(exampleFiles, "example/"+name)
		ok = err == nil
	}
	if !ok {
		s.writeProblem(w, r, revguard.CodeNotFound, "no such file")
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{ctype}
	h["Cache-Control"] = noCache
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// handleExampleSession is the example shop backend's stand-in: it issues a session for
// a new throwaway customer id to whoever asks, rate limited like any public request.
// The body, if any, must be an empty JSON object.
func (s *Server) handleExampleSession(w http.ResponseWriter, r *http.Request) {
	if err := withBody(r, decodeEmpty); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.allow(w, r, caller{}, false) {
		return
	}
	var id [8]byte
	rand.Read(id[:])
	token, sess, err := s.Sessions.CreateSession(r.Context(), "example-"+hex.EncodeToString(id[:]), s.exampleConfig().SessionTTL)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeSession(w, token, sess)
}

// exampleConfig returns s.Example with its defaults filled in.
func (s *Server) exampleConfig() Example {
	ex := *s.Example
	if ex.WidgetScript == "" {
		ex.WidgetScript = DevWidgetScript
	}
	if ex.SKU == "" {
		ex.SKU = DefaultExampleSKU
	}
	if ex.SessionTTL <= 0 {
		ex.SessionTTL = revguard.DefaultSessionTTL
	}
	return ex
}
