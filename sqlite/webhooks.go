package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"

	"github.com/revenueguard/revguard"
)

var _ revguard.Webhooks = (*Webhooks)(nil)

// Webhooks stores the webhook endpoints (revguard.Webhooks) in a DB, beside the change
// log whose seqs their cursors are.
type Webhooks struct {
	db *DB

	mu     sync.Mutex
	record *sql.Stmt // recordDelivery, prepared on the writer at first use
}

const recordDelivery = `UPDATE webhooks SET cursor = max(cursor, ?), failures = ?, next_attempt_at = ?, last_error = ?,
	last_success_at = coalesce(?, last_success_at), status = CASE WHEN status = 'paused' THEN 'paused' ELSE ? END,
	paused_at = coalesce(paused_at, ?) WHERE id = ?`

// NewWebhooks returns the endpoints stored in db, which must be open.
func NewWebhooks(db *DB) *Webhooks { return &Webhooks{db: db} }

const webhookColumns = `id, url, types, secret, created_at, status, cursor, failures, next_attempt_at, last_error, last_success_at, paused_at`

func scanWebhook(s scanner) (revguard.Webhook, error) {
	var (
		w                           revguard.Webhook
		types, status               string
		created, cursor             int64
		next, lastSuccess, pausedAt sql.NullInt64
	)
	if err := s.Scan(&w.ID, &w.URL, &types, &w.Secret, &created, &status, &cursor, &w.Failures, &next, &w.LastError, &lastSuccess, &pausedAt); err != nil {
		return w, err
	}
	if types != "" {
		for _, t := range strings.Split(types, ",") {
			w.Types = append(w.Types, revguard.ChangeType(t))
		}
	}
	w.CreatedAt = fromNanos(sql.NullInt64{Int64: created, Valid: true})
	w.Status, w.Cursor = revguard.WebhookStatus(status), uint64(cursor)
	w.NextAttemptAt, w.LastSuccessAt, w.PausedAt = fromNanos(next), fromNanos(lastSuccess), fromNanos(pausedAt)
	return w, nil
}

// CreateWebhook stores w, active, with its cursor at the newest change.
func (s *Webhooks) CreateWebhook(ctx context.Context, w revguard.Webhook) (revguard.Webhook, error) {
	conn, err := s.db.writer()
	if err != nil {
		return w, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return w, storeErr("create webhook: begin", err)
	}
	defer tx.Rollback()
	var n int
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM webhooks), last_seq FROM change_meta WHERE id = 1`).Scan(&n, &last); err != nil {
		return w, storeErr("create webhook", err)
	}
	if n >= revguard.MaxWebhooks {
		return w, revguard.Errorf(revguard.CodeInvalidRequest, "at most %d webhook endpoints may be registered", revguard.MaxWebhooks)
	}
	types := make([]string, len(w.Types))
	for i, t := range w.Types {
		types[i] = string(t)
	}
	w.Status, w.Cursor = revguard.WebhookActive, uint64(last)
	if _, err := tx.ExecContext(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES (?, ?, ?, ?, ?, 'active', ?, 0, NULL, '', NULL, NULL)`,
		w.ID, w.URL, strings.Join(types, ","), w.Secret, w.CreatedAt.UnixNano(), last); err != nil {
		if isConstraint(err) {
			return w, revguard.Errorf(revguard.CodeInvalidRequest, "webhook id %s exists", w.ID)
		}
		return w, storeErr("create webhook", err)
	}
	if err := tx.Commit(); err != nil {
		return w, storeErr("create webhook: commit", err)
	}
	return w, s.db.syncWAL()
}

// FindWebhook returns one endpoint.
func (s *Webhooks) FindWebhook(ctx context.Context, id string) (revguard.Webhook, error) {
	r, err := s.db.reader()
	if err != nil {
		return revguard.Webhook{}, err
	}
	w, err := scanWebhook(r.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, revguard.Errorf(revguard.CodeWebhookNotFound, "no webhook endpoint %s", id)
	}
	if err != nil {
		return w, storeErr("find webhook", err)
	}
	return w, nil
}

// ListWebhooks returns every endpoint, oldest first.
func (s *Webhooks) ListWebhooks(ctx context.Context) ([]revguard.Webhook, error) {
	r, err := s.db.reader()
	if err != nil {
		return nil, err
	}
	rows, err := r.QueryContext(ctx, `SELECT `+webhookColumns+` FROM webhooks ORDER BY created_at, id`)
	if err != nil {
		return nil, storeErr("list webhooks", err)
	}
	defer rows.Close()
	out := []revguard.Webhook{}
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, storeErr("list webhooks", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list webhooks", err)
	}
	return out, nil
}

// exec runs one statement changing the endpoint id and makes it durable; it fails with
// CodeWebhookNotFound when no row changed.
func (s *Webhooks) exec(ctx context.Context, what, id, query string, args ...any) error {
	conn, err := s.db.writer()
	if err != nil {
		return err
	}
	res, err := conn.ExecContext(ctx, query, args...)
	if err != nil {
		return storeErr(what+" webhook", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return revguard.Errorf(revguard.CodeWebhookNotFound, "no webhook endpoint %s", id)
	}
	return s.db.syncWAL()
}

// DeleteWebhook removes an endpoint.
func (s *Webhooks) DeleteWebhook(ctx context.Context, id string) error {
	return s.exec(ctx, "delete", id, `DELETE FROM webhooks WHERE id = ?`, id)
}

// ResumeWebhook makes an endpoint active, its failures reset.
func (s *Webhooks) ResumeWebhook(ctx context.Context, id string) (revguard.Webhook, error) {
	if err := s.exec(ctx, "resume", id, `UPDATE webhooks SET status = 'active', failures = 0,
		next_attempt_at = NULL, paused_at = NULL WHERE id = ?`, id); err != nil {
		return revguard.Webhook{}, err
	}
	return s.FindWebhook(ctx, id)
}

// PauseWebhook pauses an endpoint.
func (s *Webhooks) PauseWebhook(ctx context.Context, id string) (revguard.Webhook, error) {
	if err := s.exec(ctx, "pause", id, `UPDATE webhooks SET status = 'paused',
		paused_at = coalesce(paused_at, ?) WHERE id = ?`, s.db.Now().UnixNano(), id); err != nil {
		return revguard.Webhook{}, err
	}
	return s.FindWebhook(ctx, id)
}

// RecordDelivery stores where an endpoint's deliveries stand. It does not make the
// change durable against a crash of the machine at once: a delivery recorded and then
// lost is delivered again, which at-least-once allows.
func (s *Webhooks) RecordDelivery(ctx context.Context, id string, d revguard.WebhookDelivery) error {
	conn, err := s.db.writer()
	if err != nil {
		return err
	}
	status, paused := "active", any(nil)
	if d.Paused {
		status, paused = "paused", s.db.Now().UnixNano()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.record == nil {
		// Prepared once: the dispatcher records often, and compiling the statement
		// cost more than running it.
		if s.record, err = conn.PrepareContext(ctx, recordDelivery); err != nil {
			return storeErr("record delivery of webhook "+id, err)
		}
	}
	_, err = s.record.ExecContext(ctx,
		int64(d.Cursor), d.Failures, nanos(d.NextAttemptAt), d.LastError, nanos(d.LastSuccessAt), status, paused, id)
	if err != nil {
		return storeErr("record delivery of webhook "+id, err)
	}
	return nil
}
