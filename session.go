package revguard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// Limits of a session's lifetime (docs/api.md, POST /v1/sessions).
const (
	DefaultSessionTTL = time.Hour
	MinSessionTTL     = time.Minute
	MaxSessionTTL     = 7 * 24 * time.Hour
)

// Session is a customer's authenticated session. Only the hash of its token is stored.
type Session struct {
	CustomerID string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// Sessions issues, validates and revokes customer session tokens.
type Sessions interface {
	// CreateSession issues a new token for customerID, valid for ttl. The token is
	// returned once and stored only as its hash.
	CreateSession(ctx context.Context, customerID string, ttl time.Duration) (token string, s Session, err error)

	// FindSession returns the live session of token, or fails with CodeUnauthenticated
	// when the token is unknown, revoked or expired.
	FindSession(ctx context.Context, token string) (Session, error)

	// DeleteSession revokes token at once. Revoking an unknown token is not an error.
	DeleteSession(ctx context.Context, token string) error
}

// NewSessionToken returns a fresh session token: 256 bits from crypto/rand, base64url
// without padding (43 characters).
func NewSessionToken() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

// HashSessionToken is the only form in which a session token is stored.
func HashSessionToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return b
}
