package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/revenueguard/revguard"
)

// WebhookParams is the body of CreateWebhook.
type WebhookParams struct {
	URL    string                `json:"url"`
	Types  []revguard.ChangeType `json:"types,omitempty"`  // empty: every type
	Secret string                `json:"secret,omitempty"` // "": the server generates one
}

// Webhook is an endpoint that receives the changes, signed (see package webhook's
// Verify for the receiving side).
type Webhook struct {
	ID     string                `json:"id"`
	URL    string                `json:"url"`
	Types  []revguard.ChangeType `json:"types"`
	Secret string                `json:"secret"` // in CreateWebhook's answer only
	Status string                `json:"status"` // active or paused
	// Cursor is the seq of the last change delivered (or not wanted).
	Cursor        uint64    `json:"cursor"`
	Failures      int       `json:"failures"`
	NextAttemptAt time.Time `json:"next_attempt_at"` // zero: at once, or paused
	LastError     string    `json:"last_error"`
	LastSuccessAt time.Time `json:"last_success_at"`
	PausedAt      time.Time `json:"paused_at"`
	CreatedAt     time.Time `json:"created_at"`
	Meta          Meta      `json:"-"`
}

// CreateWebhook registers an endpoint (admin). Its answer is the only one that shows
// the secret. It is not retried (a retry would register a second endpoint).
func (c *Client) CreateWebhook(ctx context.Context, p WebhookParams) (*Webhook, error) {
	var out Webhook
	m, _, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/webhooks", body: p}, &out)
	out.Meta = m
	return result(&out, err)
}

// ListWebhooks returns every endpoint, without secrets (admin).
func (c *Client) ListWebhooks(ctx context.Context) ([]Webhook, error) {
	var out struct {
		Items []Webhook `json:"items"`
	}
	_, _, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/webhooks", safe: true}, &out)
	return out.Items, err
}

// GetWebhook returns an endpoint, without its secret (admin).
func (c *Client) GetWebhook(ctx context.Context, id string) (*Webhook, error) {
	return c.webhookCall(ctx, http.MethodGet, webhookPath(id))
}

// PauseWebhook stops deliveries to an endpoint, which keeps its place (admin).
func (c *Client) PauseWebhook(ctx context.Context, id string) (*Webhook, error) {
	return c.webhookCall(ctx, http.MethodPost, webhookPath(id)+"/pause")
}

// ResumeWebhook delivers again to a paused endpoint, at once, from where it stopped
// (admin).
func (c *Client) ResumeWebhook(ctx context.Context, id string) (*Webhook, error) {
	return c.webhookCall(ctx, http.MethodPost, webhookPath(id)+"/resume")
}

// DeleteWebhook removes an endpoint (admin). A retry answered webhook_not_found
// means an earlier attempt deleted it: DeleteWebhook then returns nil.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	_, _, err := c.do(ctx, call{method: http.MethodDelete, path: webhookPath(id), safe: true, doneOnRetry: revguard.CodeWebhookNotFound}, nil)
	return err
}

// webhookCall is a call answered by an endpoint; each is safe to repeat (pause and
// resume set a state).
func (c *Client) webhookCall(ctx context.Context, method, path string) (*Webhook, error) {
	var out Webhook
	m, _, err := c.do(ctx, call{method: method, path: path, safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

func webhookPath(id string) string { return "/v1/webhooks/" + url.PathEscape(id) }
