package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/tick"
)

var _ revguard.Sessions = (*Sessions)(nil)

// DefaultPurgeInterval is how often RunPurge deletes expired sessions by default.
const DefaultPurgeInterval = 10 * time.Minute

// Sessions stores customer sessions (revguard.Sessions) in a DB. A token is stored only
// as its SHA-256 hash (revguard.HashSessionToken), so a copy of the file gives no usable
// token. Expired sessions are refused at once and deleted later by PurgeExpired.
type Sessions struct {
	db *DB

	// Logger receives purge failures. Defaults to the DB's logger.
	Logger *slog.Logger
}

// NewSessions returns the sessions stored in db, which must be open.
func NewSessions(db *DB) *Sessions { return &Sessions{db: db, Logger: db.Logger} }

// CreateSession issues a new token for customerID, valid for ttl (0 means
// revguard.DefaultSessionTTL). It fails with CodeInvalidRequest for an invalid customer
// id or a ttl out of range. It returns once the session is durable; concurrent calls
// share one transaction and one fsync (sessionCommitter).
func (s *Sessions) CreateSession(ctx context.Context, customerID string, ttl time.Duration) (string, revguard.Session, error) {
	if ttl == 0 {
		ttl = revguard.DefaultSessionTTL
	}
	switch {
	case !revguard.ValidCustomerID(customerID):
		return "", revguard.Session{}, revguard.Errorf(revguard.CodeInvalidRequest, "customer_id must be 1 to %d printable characters", revguard.MaxCustomerIDLen)
	case ttl < revguard.MinSessionTTL || ttl > revguard.MaxSessionTTL:
		return "", revguard.Session{}, revguard.Errorf(revguard.CodeInvalidRequest, "ttl must be between %s and %s", revguard.MinSessionTTL, revguard.MaxSessionTTL)
	}
	if _, err := s.db.writer(); err != nil {
		return "", revguard.Session{}, err
	}
	now := s.db.Now().UTC()
	sess := revguard.Session{CustomerID: customerID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	token := revguard.NewSessionToken()
	r := &sessionReq{hash: revguard.HashSessionToken(token), customer: customerID,
		created: sess.CreatedAt.UnixNano(), expires: sess.ExpiresAt.UnixNano()}
	if err := s.db.sessions.add(ctx, r); err != nil {
		return "", revguard.Session{}, storeErr("create session", err)
	}
	return token, sess, nil
}

const findSessionSQL = `SELECT customer_id, created_at, expires_at FROM sessions WHERE token_hash = ?`

// FindSession returns the live session of token, or fails with CodeUnauthenticated when
// the token is unknown, revoked or expired.
func (s *Sessions) FindSession(ctx context.Context, token string) (revguard.Session, error) {
	if token == "" || len(token) > 512 {
		return revguard.Session{}, revguard.Errorf(revguard.CodeUnauthenticated, "unknown or expired session")
	}
	find := s.db.findSession
	if find == nil {
		return revguard.Session{}, errors.New("sqlite: not open")
	}
	h := revguard.HashSessionToken(token)
	var (
		sess             revguard.Session
		created, expires int64
	)
	err := find.QueryRowContext(ctx, h[:]).Scan(&sess.CustomerID, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return revguard.Session{}, revguard.Errorf(revguard.CodeUnauthenticated, "unknown or expired session")
	} else if err != nil {
		return revguard.Session{}, storeErr("find session", err)
	}
	sess.CreatedAt = time.Unix(0, created).UTC()
	sess.ExpiresAt = time.Unix(0, expires).UTC()
	if !s.db.Now().Before(sess.ExpiresAt) {
		return revguard.Session{}, revguard.Errorf(revguard.CodeUnauthenticated, "unknown or expired session")
	}
	return sess, nil
}

// EachLive calls fn with the token hash and session of up to limit sessions that are
// live at Now, those that expire last first, and stops early when fn returns false or
// ctx ends. It reads the expiry index in order, so the first session comes at once,
// however many there are. It reads one snapshot of the table: a session revoked
// meanwhile may still be passed, so a caller that keeps them must order its own
// revocations against the read (as inproc.SessionCache.Warm does).
func (s *Sessions) EachLive(ctx context.Context, limit int, fn func(hash [32]byte, sess revguard.Session) bool) error {
	if limit <= 0 {
		return nil
	}
	r, err := s.db.reader()
	if err != nil {
		return err
	}
	rows, err := r.QueryContext(ctx, `SELECT token_hash, customer_id, created_at, expires_at FROM sessions
		WHERE expires_at > ? ORDER BY expires_at DESC LIMIT ?`, s.db.Now().UnixNano(), limit)
	if err != nil {
		return storeErr("live sessions", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			hash             []byte
			sess             revguard.Session
			created, expires int64
		)
		if err := rows.Scan(&hash, &sess.CustomerID, &created, &expires); err != nil {
			return storeErr("live sessions", err)
		}
		if len(hash) != 32 {
			return fmt.Errorf("sqlite: live sessions: a token hash of %d bytes", len(hash))
		}
		sess.CreatedAt = time.Unix(0, created).UTC()
		sess.ExpiresAt = time.Unix(0, expires).UTC()
		if !fn([32]byte(hash), sess) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return storeErr("live sessions", err)
	}
	return nil
}

// DeleteSession revokes token at once. Revoking an unknown token is not an error.
func (s *Sessions) DeleteSession(ctx context.Context, token string) error {
	w, err := s.db.writer()
	if err != nil {
		return err
	}
	h := revguard.HashSessionToken(token)
	if _, err := w.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, h[:]); err != nil {
		return storeErr("delete session", err)
	}
	// A revoked token must not come back after a crash of the machine.
	if err := s.db.syncWAL(); err != nil {
		return storeErr("delete session", err)
	}
	return nil
}

// PurgeExpired deletes the sessions expired at Now and returns how many it deleted. It
// does not wait for the deletion to be durable: a purged session that a crash of the
// machine brings back is still expired, and refused.
func (s *Sessions) PurgeExpired(ctx context.Context) (int, error) {
	w, err := s.db.writer()
	if err != nil {
		return 0, err
	}
	res, err := w.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, s.db.Now().UnixNano())
	if err != nil {
		return 0, storeErr("purge sessions", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, storeErr("purge sessions", err)
	}
	return int(n), nil
}

// RunPurge calls PurgeExpired every interval (DefaultPurgeInterval when interval <= 0)
// until ctx is done, then returns nil. The server starts it in its own goroutine and
// stops it by cancelling ctx, before closing the DB. A failed purge is logged and
// retried at the next tick: expired sessions are refused whether or not they were
// purged.
func (s *Sessions) RunPurge(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultPurgeInterval
	}
	tick.Every(ctx, interval, func() {
		n, err := s.PurgeExpired(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.logger().Error("sqlite: purge expired sessions", "err", err)
		case n > 0:
			s.logger().Debug("sqlite: purged expired sessions", "count", n)
		}
	})
	return nil
}

func (s *Sessions) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}
