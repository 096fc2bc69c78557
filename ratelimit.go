package revguard

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RateLimiter is a set of token buckets, one per key.
type RateLimiter interface {
	// Allow takes one token from key's bucket. When it is empty, ok is false and
	// retryAfter says when a token will be there; nothing else changes.
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// Rate is a token bucket's refill rate and size: N tokens per Per, at most N held.
// The zero Rate means no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// Off reports whether r imposes no limit.
func (r Rate) Off() bool { return r.N == 0 }

// String formats r as ParseRate reads it.
func (r Rate) String() string {
	switch {
	case r.Off():
		return "off"
	case r.Per == time.Minute:
		return fmt.Sprintf("%d/m", r.N)
	default:
		return fmt.Sprintf("%d/s", r.N)
	}
}

// MaxRateN bounds a Rate's N: far above any real limit ("off" is no limit), and within
// what every limiter counts exactly (Redis's in microseconds of a float's 53 bits).
const MaxRateN = 100_000_000

// ParseRate reads "N/s", "N/m" (N an integer from 1 to MaxRateN) or "off".
func ParseRate(s string) (Rate, error) {
	if s == "off" {
		return Rate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n < 1 || num[0] == '+' {
		return Rate{}, fmt.Errorf("invalid rate %q: want N/s, N/m or off", s)
	}
	if n > MaxRateN {
		return Rate{}, fmt.Errorf("invalid rate %q: N is at most %d (off for no limit)", s, MaxRateN)
	}
	switch unit {
	case "s":
		return Rate{N: n, Per: time.Second}, nil
	case "m":
		return Rate{N: n, Per: time.Minute}, nil
	}
	return Rate{}, fmt.Errorf("invalid rate %q: want N/s, N/m or off", s)
}
