package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/revenueguard/revguard"
)

var _ revguard.Webhooks = (*Webhooks)(nil)

// Webhooks stores the webhook endpoints (revguard.Webhooks) in the ledger database
// (distributed mode), beside the change log whose seqs their cursors are. Every node
// may serve the admin's calls and record deliveries; the database keeps them
// consistent.
type Webhooks struct {
	db *DB

	// Now returns the current time (when an endpoint was paused). Defaults to time.Now.
	Now func() time.Time
}

// NewWebhooks returns the endpoints stored in db, which must be open.
func NewWebhooks(db *DB) *Webhooks { return &Webhooks{db: db, Now: time.Now} }

const webhookColumns = `id, url, types, secret, created_at, status, cursor, failures, next_attempt_at, last_error, last_success_at, paused_at`

func scanWebhook(row pgx.CollectableRow) (revguard.Webhook, error) {
	var (
		w                           revguard.Webhook
		types, status               string
		created, cursor             int64
		next, lastSuccess, pausedAt *int64
	)
	if err := row.Scan(&w.ID, &w.URL, &types, &w.Secret, &created, &status, &cursor, &w.Failures, &next, &w.LastError, &lastSuccess, &pausedAt); err != nil {
		return w, err
	}
	if types != "" {
		for _, t := range strings.Split(types, ",") {
			w.Types = append(w.Types, revguard.ChangeType(t))
		}
	}
	w.CreatedAt = time.Unix(0, created).UTC()
	w.Status, w.Cursor = revguard.WebhookStatus(status), uint64(cursor)
	w.NextAttemptAt, w.LastSuccessAt, w.PausedAt = fromNanos(next), fromNanos(lastSuccess), fromNanos(pausedAt)
	return w, nil
}

// nullNanos returns t as unix nanoseconds, or nil (NULL) for the zero time: unlike
// nanos, whose noTime only ApplyEvents' arrays understand, it is stored as it is.
func nullNanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

func webhookNotFound(id string) error {
	return revguard.Errorf(revguard.CodeWebhookNotFound, "no webhook endpoint %s", id)
}

// CreateWebhook stores w, active, with its cursor at the newest change.
func (s *Webhooks) CreateWebhook(ctx context.Context, w revguard.Webhook) (revguard.Webhook, error) {
	pool, err := s.db.acquirePool()
	if err != nil {
		return w, err
	}
	ctx, cancel := s.db.bound(ctx)
	defer cancel()
	types := make([]string, len(w.Types))
	for i, t := range w.Types {
		types[i] = string(t)
	}
	var last int64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Locking the change log's one meta row serialises creates, on every node, so
		// that two of them cannot both count MaxWebhooks-1 endpoints and insert. It
		// also holds back appends to the log until the endpoint is in: its cursor is
		// the newest change, and it gets every later one.
		if err := tx.QueryRow(ctx, `SELECT last_seq FROM change_meta WHERE id = 1 FOR UPDATE`).Scan(&last); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhooks`).Scan(&n); err != nil {
			return err
		}
		if n >= revguard.MaxWebhooks {
			return revguard.Errorf(revguard.CodeInvalidRequest, "at most %d webhook endpoints may be registered", revguard.MaxWebhooks)
		}
		_, err := tx.Exec(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES ($1, $2, $3, $4, $5, 'active', $6, 0, NULL, '', NULL, NULL)`,
			w.ID, w.URL, strings.Join(types, ","), w.Secret, w.CreatedAt.UnixNano(), last)
		return err
	})
	if _, ok := errors.AsType[*revguard.Error](err); ok {
		return w, err
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "23505" { // unique_violation
		return w, revguard.Errorf(revguard.CodeInvalidRequest, "webhook id %s exists", w.ID)
	}
	if err != nil {
		return w, s.db.formatError(ctx, "create webhook", err)
	}
	w.Status, w.Cursor = revguard.WebhookActive, uint64(last)
	return w, nil
}

// FindWebhook returns one endpoint.
func (s *Webhooks) FindWebhook(ctx context.Context, id string) (revguard.Webhook, error) {
	return s.one(ctx, "find", id, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1`, id)
}

// one runs query, which returns the endpoint id or nothing, and fails with
// CodeWebhookNotFound when it returns nothing.
func (s *Webhooks) one(ctx context.Context, what, id, query string, args ...any) (revguard.Webhook, error) {
	pool, err := s.db.acquirePool()
	if err != nil {
		return revguard.Webhook{}, err
	}
	ctx, cancel := s.db.bound(ctx)
	defer cancel()
	rows, _ := pool.Query(ctx, query, args...) // CollectOneRow reports its error
	w, err := pgx.CollectOneRow(rows, scanWebhook)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, webhookNotFound(id)
	}
	if err != nil {
		return w, s.db.formatError(ctx, what+" webhook "+id, err)
	}
	return w, nil
}

// ListWebhooks returns every endpoint, oldest first.
func (s *Webhooks) ListWebhooks(ctx context.Context) ([]revguard.Webhook, error) {
	pool, err := s.db.acquirePool()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.db.bound(ctx)
	defer cancel()
	rows, _ := pool.Query(ctx, `SELECT `+webhookColumns+` FROM webhooks ORDER BY created_at, id`) // CollectRows reports its error
	out, err := pgx.CollectRows(rows, scanWebhook)
	if err != nil {
		return nil, s.db.formatError(ctx, "list webhooks", err)
	}
	return out, nil
}

// DeleteWebhook removes an endpoint.
func (s *Webhooks) DeleteWebhook(ctx context.Context, id string) error {
	pool, err := s.db.acquirePool()
	if err != nil {
		return err
	}
	ctx, cancel := s.db.bound(ctx)
	defer cancel()
	tag, err := pool.Exec(ctx, `DELETE FROM webhooks WHERE id = $1`, id)
	if err != nil {
		return s.db.formatError(ctx, "delete webhook "+id, err)
	}
	if tag.RowsAffected() == 0 {
		return webhookNotFound(id)
	}
	return nil
}

// ResumeWebhook makes an endpoint active, its failures reset.
func (s *Webhooks) ResumeWebhook(ctx context.Context, id string) (revguard.Webhook, error) {
	return s.one(ctx, "resume", id, `UPDATE webhooks SET status = 'active', failures = 0,
		next_attempt_at = NULL, paused_at = NULL WHERE id = $1 RETURNING `+webhookColumns, id)
}

// PauseWebhook pauses an endpoint. One paused already keeps the time it was paused.
func (s *Webhooks) PauseWebhook(ctx context.Context, id string) (revguard.Webhook, error) {
	return s.one(ctx, "pause", id, `UPDATE webhooks SET status = 'paused',
		paused_at = coalesce(paused_at, $2) WHERE id = $1 RETURNING `+webhookColumns, id, s.Now().UnixNano())
}

// RecordDelivery stores where an endpoint's deliveries stand. The statement leaves a
// paused endpoint paused, whoever paused it: the dispatcher's record of an attempt
// that raced with the admin's pause must not undo the pause.
func (s *Webhooks) RecordDelivery(ctx context.Context, id string, d revguard.WebhookDelivery) error {
	pool, err := s.db.acquirePool()
	if err != nil {
		return err
	}
	ctx, cancel := s.db.bound(ctx)
	defer cancel()
	status, paused := revguard.WebhookActive, (*int64)(nil)
	if d.Paused {
		status, paused = revguard.WebhookPaused, nullNanos(s.Now())
	}
	_, err = pool.Exec(ctx, `UPDATE webhooks SET cursor = greatest(cursor, $1), failures = $2, next_attempt_at = $3, last_error = $4,
		last_success_at = coalesce($5, last_success_at), status = CASE WHEN status = 'paused' THEN 'paused' ELSE $6 END,
		paused_at = coalesce(paused_at, $7) WHERE id = $8`,
		int64(d.Cursor), d.Failures, nullNanos(d.NextAttemptAt), d.LastError, nullNanos(d.LastSuccessAt), string(status), paused, id)
	if err != nil {
		return s.db.formatError(ctx, "record delivery of webhook "+id, err)
	}
	return nil
}
