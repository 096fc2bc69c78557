package httpapi

import (
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestToWebhookJSON_Paused: a paused endpoint shows no next attempt, though the store
// keeps the one it had when the last retry failed (resume clears it and starts at once).
func TestToWebhookJSON_Paused(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	w := revguard.Webhook{ID: "wh_1", Status: revguard.WebhookActive, NextAttemptAt: at, Failures: 3}
	if j := toWebhookJSON(&w, false); j.NextAttemptAt == nil || !j.NextAttemptAt.Equal(at) {
		t.Fatalf("active: next_attempt_at %v, want %v", j.NextAttemptAt, at)
	}
	w.Status, w.PausedAt = revguard.WebhookPaused, at.Add(time.Hour)
	if j := toWebhookJSON(&w, false); j.NextAttemptAt != nil || j.PausedAt == nil {
		t.Fatalf("paused: next_attempt_at %v, paused_at %v; want null and set", j.NextAttemptAt, j.PausedAt)
	}
}
