package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/webhook"
)

// webhookRequest is the body of POST /v1/webhooks.
type webhookRequest struct {
	URL    string
	Types  []revguard.ChangeType
	Secret string
}

var webhookFields = []string{"url", "types", "secret"}

// decodeWebhook decodes and validates the body of POST /v1/webhooks.
func decodeWebhook(body []byte) (webhookRequest, error) {
	var req webhookRequest
	if len(body) == 0 {
		return req, revguard.Errorf(revguard.CodeInvalidRequest, "request body is empty; url is required")
	}
	d := objectDecoder{data: body, fields: webhookFields}
	var types []string
	for f := d.next(); f >= 0; f = d.next() {
		if d.null() {
			continue
		}
		switch f {
		case 0:
			req.URL = d.str("url")
		case 1:
			types = d.strs("types", len(revguard.ChangeTypes))
		case 2:
			req.Secret = d.str("secret")
		}
	}
	if d.err != nil {
		return req, d.err
	}
	if req.URL == "" {
		return req, revguard.Errorf(revguard.CodeInvalidRequest, "url is required")
	}
	if err := validWebhookURL(req.URL); err != nil {
		return req, err
	}
	seen := make(map[string]bool, len(types))
	for _, t := range types {
		if !revguard.ChangeType(t).Valid() {
			return req, revguard.Errorf(revguard.CodeInvalidRequest, "types: %s is not a change type", quoteForDetail([]byte(t)))
		}
		if !seen[t] {
			seen[t] = true
			req.Types = append(req.Types, revguard.ChangeType(t))
		}
	}
	if req.Secret != "" {
		if _, err := webhook.ParseSecret(req.Secret); err != nil {
			return req, revguard.Errorf(revguard.CodeInvalidRequest, "secret: %v", err)
		}
	}
	return req, nil
}

// validWebhookURL accepts an absolute http or https URL of printable ASCII (RFC 3986:
// a space or a non-ASCII character must be percent-encoded), with a host, a port from
// 1 to 65535 if any, and no credentials or fragment: a URL a delivery can be sent to.
func validWebhookURL(s string) error {
	if len(s) > revguard.MaxWebhookURLLen {
		return revguard.Errorf(revguard.CodeInvalidRequest, "url is longer than %d bytes", revguard.MaxWebhookURLLen)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || strings.Contains(s, "#") || u.User != nil ||
		strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return revguard.Errorf(revguard.CodeInvalidRequest, "url must be an absolute http or https URL of printable ASCII, without credentials or fragment")
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") { // an empty port is none of them
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return revguard.Errorf(revguard.CodeInvalidRequest, "url: port %q is not from 1 to 65535", p)
		}
	}
	return nil
}

// webhookJSON is an endpoint as the API shows it; the secret only when it is created.
type webhookJSON struct {
	ID            string                 `json:"id"`
	URL           string                 `json:"url"`
	Types         []revguard.ChangeType  `json:"types"`
	Secret        string                 `json:"secret,omitempty"`
	Status        revguard.WebhookStatus `json:"status"`
	CreatedAt     time.Time              `json:"created_at"`
	Cursor        uint64                 `json:"cursor"`
	Failures      int                    `json:"failures"`
	NextAttemptAt *time.Time             `json:"next_attempt_at"`
	LastError     *string                `json:"last_error"`
	LastSuccessAt *time.Time             `json:"last_success_at"`
	PausedAt      *time.Time             `json:"paused_at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC().Truncate(time.Millisecond)
	return &t
}

func toWebhookJSON(w *revguard.Webhook, withSecret bool) webhookJSON {
	j := webhookJSON{ID: w.ID, URL: w.URL, Types: w.Types, Status: w.Status,
		CreatedAt: w.CreatedAt.UTC().Truncate(time.Millisecond), Cursor: w.Cursor, Failures: w.Failures,
		NextAttemptAt: optTime(w.NextAttemptAt), LastSuccessAt: optTime(w.LastSuccessAt), PausedAt: optTime(w.PausedAt)}
	if j.Types == nil {
		j.Types = []revguard.ChangeType{}
	}
	if w.Status == revguard.WebhookPaused {
		j.NextAttemptAt = nil // nothing is attempted while paused; resume starts at once
	}
	if w.LastError != "" {
		e := w.LastError
		j.LastError = &e
	}
	if withSecret {
		j.Secret = w.Secret
	}
	return j
}

func writeJSONValue(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("httpapi: marshal: " + err.Error()) // plain types: cannot fail
	}
	writeJSON(w, status, append(b, '\n'))
}

// webhooksOn answers 404 when the server has no webhook store.
func (s *Server) webhooksOn(w http.ResponseWriter, r *http.Request) bool {
	if !s.requireAdmin(w, r) {
		return false
	}
	if s.Webhooks == nil {
		s.writeProblem(w, r, revguard.CodeNotFound, "webhooks are not available in this mode")
		return false
	}
	return true
}

// handleCreateWebhook registers an endpoint (admin).
func (s *Server) handleCreateWebhook(w http.ResponseWriter, r *http.Request) {
	if !s.webhooksOn(w, r) {
		return
	}
	var req webhookRequest
	if err := withBody(r, func(b []byte) (err error) {
		req, err = decodeWebhook(b)
		return err
	}); err != nil {
		s.writeError(w, r, err)
		return
	}
	var id [10]byte
	rand.Read(id[:])
	wh := revguard.Webhook{ID: "wh_" + hex.EncodeToString(id[:]), URL: req.URL, Types: req.Types,
		Secret: req.Secret, CreatedAt: s.Now().UTC()}
	if wh.Secret == "" {
		wh.Secret = webhook.NewSecret()
	}
	wh, err := s.Webhooks.CreateWebhook(r.Context(), wh)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.webhooksChanged()
	w.Header().Set("Location", "/v1/webhooks/"+wh.ID)
	w.Header()["Cache-Control"] = noStore // it carries the signing secret, as a session its token
	writeJSONValue(w, http.StatusCreated, toWebhookJSON(&wh, true))
}

func (s *Server) webhooksChanged() {
	if s.WebhooksChanged != nil {
		s.WebhooksChanged()
	}
}

// handleListWebhooks lists the endpoints (admin).
func (s *Server) handleListWebhooks(w http.ResponseWriter, r *http.Request) {
	if !s.webhooksOn(w, r) {
		return
	}
	if !s.noQuery(w, r) {
		return
	}
	list, err := s.Webhooks.ListWebhooks(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]webhookJSON, len(list))
	for i := range list {
		items[i] = toWebhookJSON(&list[i], false)
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"items": items})
}

// webhookID reads the {id} of the path; an id of impossible form is not found.
func (s *Server) webhookID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	rest, ok := strings.CutPrefix(id, "wh_")
	if !ok || len(rest) != 20 || strings.Trim(rest, "0123456789abcdef") != "" {
		s.writeProblem(w, r, revguard.CodeWebhookNotFound, "no such webhook endpoint")
		return "", false
	}
	return id, true
}

// handleGetWebhook shows one endpoint (admin).
func (s *Server) handleGetWebhook(w http.ResponseWriter, r *http.Request) {
	if !s.webhooksOn(w, r) {
		return
	}
	id, ok := s.webhookID(w, r)
	if !ok {
		return
	}
	wh, err := s.Webhooks.FindWebhook(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSONValue(w, http.StatusOK, toWebhookJSON(&wh, false))
}

// handleDeleteWebhook removes an endpoint (admin).
func (s *Server) handleDeleteWebhook(w http.ResponseWriter, r *http.Request) {
	if !s.webhooksOn(w, r) {
		return
	}
	id, ok := s.webhookID(w, r)
	if !ok {
		return
	}
	if err := withBody(r, decodeEmpty); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.Webhooks.DeleteWebhook(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.webhooksChanged()
	w.WriteHeader(http.StatusNoContent)
}

// handlePauseWebhook and handleResumeWebhook stop and restart an endpoint's deliveries
// (admin); a resumed endpoint carries on from its cursor.
func (s *Server) handlePauseWebhook(w http.ResponseWriter, r *http.Request) {
	s.setWebhookStatus(w, r, func(ctx context.Context, id string) (revguard.Webhook, error) {
		return s.Webhooks.PauseWebhook(ctx, id)
	})
}

func (s *Server) handleResumeWebhook(w http.ResponseWriter, r *http.Request) {
	s.setWebhookStatus(w, r, func(ctx context.Context, id string) (revguard.Webhook, error) {
		return s.Webhooks.ResumeWebhook(ctx, id)
	})
}

func (s *Server) setWebhookStatus(w http.ResponseWriter, r *http.Request, set func(ctx context.Context, id string) (revguard.Webhook, error)) {
	if !s.webhooksOn(w, r) {
		return
	}
	id, ok := s.webhookID(w, r)
	if !ok {
		return
	}
	if err := withBody(r, decodeEmpty); err != nil {
		s.writeError(w, r, err)
		return
	}
	wh, err := set(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.webhooksChanged()
	writeJSONValue(w, http.StatusOK, toWebhookJSON(&wh, false))
}

// noQuery answers 400 to a request with query parameters, where the endpoint takes
// none, and reports whether there were none.
func (s *Server) noQuery(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery != "" {
		s.writeProblem(w, r, revguard.CodeInvalidRequest, "this endpoint takes no query parameters")
		return false
	}
	return true
}
