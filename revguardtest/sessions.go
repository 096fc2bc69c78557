package revguardtest

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// SessionClock is the settable clock that TestSessions hands to the sessions it opens.
// It starts at LedgerTime and is safe for concurrent use.
type SessionClock struct{ off atomic.Int64 }

// Now returns the clock's current time.
func (c *SessionClock) Now() time.Time { return LedgerTime.Add(time.Duration(c.off.Load())) }

// Advance moves the clock forward by d.
func (c *SessionClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// TestSessions runs the conformance suite of revguard.Sessions against the stores made
// by open, each empty, reading the time from now.
func TestSessions(t *testing.T, open func(tb testing.TB, now func() time.Time) revguard.Sessions) {
	ctx := context.Background()
	fresh := func(t *testing.T) (revguard.Sessions, *SessionClock) {
		c := &SessionClock{}
		return open(t, c.Now), c
	}
	create := func(t *testing.T, s revguard.Sessions, customer string, ttl time.Duration) string {
		t.Helper()
		tok, sess, err := s.CreateSession(ctx, customer, ttl)
		if err != nil {
			t.Fatalf("CreateSession(%q, %v): %v", customer, ttl, err)
		}
		if sess.CustomerID != customer {
			t.Fatalf("CreateSession: customer %q, want %q", sess.CustomerID, customer)
		}
		return tok
	}

	t.Run("OK", func(t *testing.T) {
		s, c := fresh(t)
		tok, sess, err := s.CreateSession(ctx, "c-42", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(b) < 16 {
			t.Fatalf("token %q: want at least 128 bits, base64url (err %v)", tok, err)
		}
		if !sess.CreatedAt.Equal(c.Now()) || !sess.ExpiresAt.Equal(c.Now().Add(time.Hour)) {
			t.Fatalf("session times %v .. %v, want %v .. +1h", sess.CreatedAt, sess.ExpiresAt, c.Now())
		}
		got, err := s.FindSession(ctx, tok)
		if err != nil {
			t.Fatalf("FindSession: %v", err)
		}
		if got.CustomerID != "c-42" || !got.ExpiresAt.Equal(sess.ExpiresAt) || !got.CreatedAt.Equal(sess.CreatedAt) {
			t.Fatalf("FindSession = %+v, want %+v", got, sess)
		}
	})
	t.Run("DefaultTTL", func(t *testing.T) {
		s, c := fresh(t)
		_, sess, err := s.CreateSession(ctx, "c-1", 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.Now().Add(revguard.DefaultSessionTTL); !sess.ExpiresAt.Equal(want) {
			t.Fatalf("ExpiresAt = %v, want %v", sess.ExpiresAt, want)
		}
	})
	t.Run("UniqueTokens", func(t *testing.T) {
		s, _ := fresh(t)
		a := create(t, s, "same", time.Hour)
		b := create(t, s, "same", time.Hour)
		if a == b {
			t.Fatal("two sessions got the same token")
		}
		if err := s.DeleteSession(ctx, a); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FindSession(ctx, b); err != nil {
			t.Fatalf("revoking one session of a customer revoked another: %v", err)
		}
	})
	t.Run("ErrUnknown", func(t *testing.T) {
		s, _ := fresh(t)
		tok := create(t, s, "c-1", time.Hour)
		for _, bad := range []string{"", revguard.NewSessionToken(), tok[:len(tok)-1], tok + "x", strings.ToUpper(tok), strings.Repeat("x", 10000)} {
			_, err := s.FindSession(ctx, bad)
			checkCode(t, "FindSession(unknown token)", err, revguard.CodeUnauthenticated)
		}
	})
	t.Run("ErrRevoked", func(t *testing.T) {
		s, _ := fresh(t)
		tok := create(t, s, "c-1", time.Hour)
		if err := s.DeleteSession(ctx, tok); err != nil {
			t.Fatal(err)
		}
		_, err := s.FindSession(ctx, tok)
		checkCode(t, "FindSession(revoked)", err, revguard.CodeUnauthenticated)
		if err := s.DeleteSession(ctx, tok); err != nil {
			t.Fatalf("DeleteSession again: %v", err)
		}
		if err := s.DeleteSession(ctx, "never-issued"); err != nil {
			t.Fatalf("DeleteSession(unknown): %v", err)
		}
	})
	t.Run("ErrExpired", func(t *testing.T) {
		s, c := fresh(t)
		tok := create(t, s, "c-1", time.Minute)
		c.Advance(time.Minute - time.Nanosecond)
		if _, err := s.FindSession(ctx, tok); err != nil {
			t.Fatalf("FindSession just before expiry: %v", err)
		}
		c.Advance(time.Nanosecond)
		_, err := s.FindSession(ctx, tok)
		checkCode(t, "FindSession at expiry", err, revguard.CodeUnauthenticated)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		s, _ := fresh(t)
		for _, tt := range []struct {
			customer string
			ttl      time.Duration
		}{
			{"", time.Hour},
			{strings.Repeat("x", revguard.MaxCustomerIDLen+1), time.Hour},
			{"bad\x00id", time.Hour},
			{"c-1", revguard.MinSessionTTL - time.Second},
			{"c-1", revguard.MaxSessionTTL + time.Second},
			{"c-1", -time.Hour},
		} {
			_, _, err := s.CreateSession(ctx, tt.customer, tt.ttl)
			checkCode(t, "CreateSession("+tt.customer+", "+tt.ttl.String()+")", err, revguard.CodeInvalidRequest)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		s, _ := fresh(t)
		var wg sync.WaitGroup
		toks := make([]string, 16)
		errs := make([]error, len(toks))
		for i := range toks {
			wg.Go(func() {
				if toks[i], _, errs[i] = s.CreateSession(ctx, "c", time.Hour); errs[i] != nil {
					return
				}
				_, errs[i] = s.FindSession(ctx, toks[i])
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
			if seen[toks[i]] {
				t.Fatal("duplicate token")
			}
			seen[toks[i]] = true
		}
	})
}
