package revguard

import (
	"context"
	"time"
)

// Limits of webhook endpoints.
const (
	MaxWebhooks      = 32   // endpoints registered at once
	MaxWebhookURLLen = 2048 // bytes
)

// WebhookStatus is the state of a webhook endpoint.
type WebhookStatus string

// The webhook endpoint states: an active endpoint gets deliveries; a paused one (by
// the dispatcher after the last retry of an event failed, or by the admin) keeps its
// place in the change log until it is resumed.
const (
	WebhookActive WebhookStatus = "active"
	WebhookPaused WebhookStatus = "paused"
)

// Webhook is an endpoint registered by the admin, and where its deliveries stand.
type Webhook struct {
	ID        string
	URL       string
	Types     []ChangeType // the changes it wants; empty for every type
	Secret    string       // "whsec_" + base64 of the HMAC key
	CreatedAt time.Time

	Status WebhookStatus
	// Cursor is the Seq of the last change delivered (or skipped, not being wanted):
	// the next delivery is of the first wanted change after it.
	Cursor uint64
	// Failures counts the failed attempts at the change after Cursor; NextAttemptAt is
	// when the next one is due (zero: at once).
	Failures      int
	NextAttemptAt time.Time
	LastError     string
	LastSuccessAt time.Time
	PausedAt      time.Time
}

// Wants reports whether w subscribes to changes of type t.
func (w *Webhook) Wants(t ChangeType) bool {
	if len(w.Types) == 0 {
		return true
	}
	for _, v := range w.Types {
		if v == t {
			return true
		}
	}
	return false
}

// WebhookDelivery is where an endpoint's deliveries stand after an attempt.
type WebhookDelivery struct {
	Cursor        uint64
	Failures      int
	NextAttemptAt time.Time
	LastError     string
	LastSuccessAt time.Time
	Paused        bool // the dispatcher gave up on the change after Cursor
}

// Webhooks stores the webhook endpoints (sqlite.Webhooks in embedded mode).
type Webhooks interface {
	// CreateWebhook stores w, which has its ID, Secret and CreatedAt set, active, with
	// its Cursor at the newest change (it gets the changes from then on). It fails with
	// CodeInvalidRequest when MaxWebhooks endpoints exist.
	CreateWebhook(ctx context.Context, w Webhook) (Webhook, error)
	// FindWebhook returns one endpoint, or fails with CodeWebhookNotFound.
	FindWebhook(ctx context.Context, id string) (Webhook, error)
	// ListWebhooks returns every endpoint, oldest first.
	ListWebhooks(ctx context.Context) ([]Webhook, error)
	// DeleteWebhook removes an endpoint, or fails with CodeWebhookNotFound.
	DeleteWebhook(ctx context.Context, id string) error
	// ResumeWebhook makes a paused endpoint active again with its failures reset: its
	// deliveries carry on from its Cursor. It fails with CodeWebhookNotFound.
	ResumeWebhook(ctx context.Context, id string) (Webhook, error)
	// PauseWebhook pauses an endpoint, or fails with CodeWebhookNotFound.
	PauseWebhook(ctx context.Context, id string) (Webhook, error)
	// RecordDelivery stores where an endpoint's deliveries stand. An endpoint that
	// was deleted meanwhile is ignored. The cursor never moves back: a report from a
	// worker behind another (two dispatchers for a moment, in distributed mode while
	// the lead changes hands) keeps the further cursor.
	RecordDelivery(ctx context.Context, id string, d WebhookDelivery) error
}
