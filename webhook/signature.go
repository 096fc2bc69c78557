package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery, as Standard Webhooks names them.
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
)

// DefaultTolerance is the replay window a receiver should allow: a delivery whose
// timestamp is further than this from the receiver's clock is refused, so a captured
// request cannot be replayed later.
const DefaultTolerance = 5 * time.Minute

// secretPrefix starts every secret; the rest is the base64 of the HMAC key.
const secretPrefix = "whsec_"

// Key sizes of a secret, in bytes.
const (
	minKeyLen = 24
	maxKeyLen = 64
)

// NewSecret returns a new endpoint secret: "whsec_" and the base64 of 32 random bytes.
func NewSecret() string {
	var k [32]byte
	rand.Read(k[:])
	return secretPrefix + base64.StdEncoding.EncodeToString(k[:])
}

// ParseSecret returns the HMAC key of a secret, or an error saying what is wrong with it.
func ParseSecret(secret string) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, errors.New(`a secret starts with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, errors.New(`a secret is "whsec_" and standard base64`)
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return nil, fmt.Errorf("a secret's key is %d to %d bytes, not %d", minKeyLen, maxKeyLen, len(key))
	}
	return key, nil
}

// Sign returns the signature header value of a delivery: "v1," and the base64 of the
// HMAC-SHA256, under the secret's key, of the id, the timestamp in unix seconds and the
// body, joined with dots (Standard Webhooks).
func Sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook: missing or malformed signature headers")
	ErrBadSignature = errors.New("webhook: no signature matches")
	ErrTooOld       = errors.New("webhook: timestamp outside the replay window")
)

// Verify checks a delivery as a receiver should: the id, timestamp and signature
// headers are present, the timestamp is within tolerance of now, and one of the
// space-separated signatures matches the body under the secret. It returns the
// delivery's id (the change's stable id, for dropping duplicates).
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) (string, error) {
	key, err := ParseSecret(secret)
	if err != nil {
		return "", err
	}
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return "", ErrNoSignature
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return "", ErrNoSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return "", ErrTooOld
	}
	want := Sign(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return id, nil
		}
	}
	return "", ErrBadSignature
}
