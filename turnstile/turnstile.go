// Package turnstile verifies Cloudflare Turnstile tokens with the siteverify API, so that a
// human is behind each reservation before inventory is touched.
//
// [BotChecker] implements [revguard.BotChecker]. It fails closed: a token is accepted only
// when the verifier answered, in time and in the documented shape, that it is valid (and,
// when configured, that it was solved on the expected hostname for the expected action).
// Everything else is a refusal, and only a verdict on the token blames the customer:
//
//   - the verifier said no about the token (invalid-input-response, timeout-or-duplicate,
//     missing-input-response, or a refusal without any code), or it was solved on another
//     hostname or for another action: [revguard.CodeBotCheckFailed] (403);
//   - the verifier could not be reached (connection refused, deadline, 5xx, internal-error
//     twice): [revguard.CodeBotCheckUnavailable], after exactly one retry that reuses the
//     idempotency key, so that Cloudflare treats the retry as the same request and a
//     token it consumed on the lost first attempt still verifies;
//   - the verifier answered, but not with a verdict on the token: an answer that is odd in
//     any way (not JSON, no success field, trailing data, too large, a redirect, an
//     unexpected status such as the 404 of a wrong --turnstile-url, even in JSON), a
//     refusal of our own request (missing-input-secret, invalid-input-secret,
//     invalid-parsed-secret and invalid-widget-id, a misconfiguration logged at error
//     level; bad-request, unless a code names the token), or one with only codes this
//     checker does not know. Not the customer's fault, so
//     [revguard.CodeBotCheckUnavailable] (503) too: nobody gets in, and the status says
//     the fault is ours instead of sending the customer to solve the challenge again.
//
// Tokens are single-use and valid for 300 seconds; an empty token or one longer than
// 2048 bytes is refused without spending a call.
package turnstile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/revenueguard/revguard"
)

// SiteverifyURL is Cloudflare's siteverify endpoint.
const SiteverifyURL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"

// MaxTokenLen is the longest token Turnstile issues (Cloudflare's documented limit).
const MaxTokenLen = 2048

// DefaultTimeout is the deadline of one siteverify attempt.
const DefaultTimeout = 2 * time.Second

// maxBodySize bounds how much of a siteverify answer is read. A genuine answer is a few
// hundred bytes; anything larger is odd and refused.
const maxBodySize = 16 << 10

// retryDelay is the pause before the single retry, short enough to stay well inside a
// request's budget.
const retryDelay = 50 * time.Millisecond

// Outcomes passed to BotChecker.OnVerify: a small fixed set, fit for a metric label.
const (
	OutcomeSuccess         = "success"          // a human: the verifier accepted the token
	OutcomeRejected        = "rejected"         // empty or oversized token, no call spent
	OutcomeFailed          = "failed"           // the verifier refused the token
	OutcomeMismatch        = "mismatch"         // valid token, wrong hostname or action
	OutcomeInvalidResponse = "invalid_response" // an answer we could not trust (not a verdict)
	OutcomeUnavailable     = "unavailable"      // no answer after the retry
	OutcomeMisconfigured   = "misconfigured"    // the verifier rejected our secret or our request
)

// BotChecker verifies Turnstile tokens with a siteverify endpoint. Set the exported
// fields before the first Verify; it is safe for concurrent use afterwards.
type BotChecker struct {
	// Secret is the widget's secret key.
	Secret string

	// URL is the siteverify endpoint; NewBotChecker sets SiteverifyURL.
	URL string

	// Client sends the requests. NewBotChecker sets a client that keeps enough idle
	// connections for a crowd and never follows redirects (a redirect would re-send the
	// secret elsewhere, and is an odd answer anyway).
	Client *http.Client

	// Timeout is the deadline of each attempt; there are at most two.
	Timeout time.Duration

	// Hostname and Action, when not empty, must equal the hostname and action of the
	// solved challenge; a mismatch fails the check (a token minted on another site or for
	// another form).
	Hostname string
	Action   string

	// Logger receives warnings about the verifier and errors about our configuration.
	// Neither the secret nor the token is ever logged.
	Logger *slog.Logger

	// OnVerify, when set, is called once at the end of each Verify with one of the
	// Outcome constants and the call's total duration (for metrics).
	OnVerify func(outcome string, d time.Duration)

	// Now is the clock used to time Verify.
	Now func() time.Time

	// throttles keep an outage, a misconfiguration or an attack, seen on every request,
	// from flooding the log.
	throttles [numLogKinds]logThrottle
}

var _ revguard.BotChecker = (*BotChecker)(nil)

// NewBotChecker returns a BotChecker for secret with the default endpoint, client,
// timeout, logger and clock.
func NewBotChecker(secret string) *BotChecker {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 256
	return &BotChecker{
		Secret:  secret,
		URL:     SiteverifyURL,
		Timeout: DefaultTimeout,
		Client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		Logger: slog.Default(),
		Now:    time.Now,
	}
}

// Verify checks the single-use token for the client at remoteIP (may be empty). It
// returns nil only for a token the verifier accepted; see the package documentation for
// every other outcome.
func (c *BotChecker) Verify(ctx context.Context, token, remoteIP string) error {
	now := c.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	outcome, err := c.verify(ctx, token, remoteIP)
	if c.OnVerify != nil {
		c.OnVerify(outcome, now().Sub(start))
	}
	return err
}

func (c *BotChecker) verify(ctx context.Context, token, remoteIP string) (string, error) {
	switch {
	case token == "":
		return OutcomeRejected, revguard.Errorf(revguard.CodeBotCheckFailed, "bot check token missing")
	case len(token) > MaxTokenLen:
		return OutcomeRejected, revguard.Errorf(revguard.CodeBotCheckFailed, "bot check token too long")
	}
	form := url.Values{"secret": {c.Secret}, "response": {token}}
	if remoteIP != "" {
		form.Set("remoteip", remoteIP)
	}
	// One key for both attempts: the retry is the same request as far as Cloudflare is
	// concerned, so a token consumed by a first attempt whose answer got lost still passes.
	key := uuid.NewString() // random (version 4), from crypto/rand
	form.Set("idempotency_key", key)
	body := form.Encode()

	a := c.attempt(ctx, body)
	if a.retry && ctx.Err() == nil {
		c.logger().Debug("turnstile: siteverify attempt failed, retrying",
			"idempotency_key", key, "err", a.err)
		t := time.NewTimer(retryDelay)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() == nil {
			a = c.attempt(ctx, body)
		}
	}
	if a.retry {
		c.log(logUnavailable, slog.LevelWarn, "turnstile: siteverify unavailable", "idempotency_key", key, "err", a.err)
		return OutcomeUnavailable, revguard.Errorf(revguard.CodeBotCheckUnavailable, "bot check verifier unavailable")
	}
	if a.err != nil {
		c.log(logUntrusted, slog.LevelWarn, "turnstile: untrusted siteverify answer; bot checks fail with 503 until it answers as documented",
			"idempotency_key", key, "err", a.err)
		return OutcomeInvalidResponse, revguard.Errorf(revguard.CodeBotCheckUnavailable, "bot check verifier unavailable")
	}
	return c.judge(a.resp, key)
}

// judge turns a well-formed siteverify answer into an outcome.
func (c *BotChecker) judge(r *response, key string) (string, error) {
	if !r.Success {
		switch {
		case r.misconfigured():
			c.log(logMisconfigured, slog.LevelError, "turnstile: the verifier rejected our secret key or widget: check --turnstile-secret; every bot check fails until it is fixed",
				"error_codes", r.ErrorCodes, "idempotency_key", key)
			return OutcomeMisconfigured, revguard.Errorf(revguard.CodeBotCheckUnavailable, "bot check misconfigured")
		case r.verdict():
			return OutcomeFailed, revguard.Errorf(revguard.CodeBotCheckFailed, "bot check failed: %s", r.reason())
		case r.has(codeBadRequest):
			c.log(logBadRequest, slog.LevelError, "turnstile: the verifier called our request malformed",
				"error_codes", r.ErrorCodes, "idempotency_key", key)
			return OutcomeMisconfigured, revguard.Errorf(revguard.CodeBotCheckUnavailable, "bot check verifier unavailable")
		}
		// Only codes this checker does not know: no verdict it can read.
		c.log(logUntrusted, slog.LevelWarn, "turnstile: siteverify refusal with unknown error codes; bot checks fail with 503 until it answers as documented",
			"error_codes", r.ErrorCodes, "idempotency_key", key)
		return OutcomeInvalidResponse, revguard.Errorf(revguard.CodeBotCheckUnavailable, "bot check verifier unavailable")
	}
	if c.Hostname != "" && !strings.EqualFold(r.Hostname, c.Hostname) {
		c.log(logMismatch, slog.LevelWarn, "turnstile: token solved on an unexpected hostname",
			"hostname", r.Hostname, "want", c.Hostname, "idempotency_key", key)
		return OutcomeMismatch, revguard.Errorf(revguard.CodeBotCheckFailed, "bot check failed: hostname mismatch")
	}
	if c.Action != "" && r.Action != c.Action {
		c.log(logMismatch, slog.LevelWarn, "turnstile: token solved for an unexpected action",
			"action", r.Action, "want", c.Action, "idempotency_key", key)
		return OutcomeMismatch, revguard.Errorf(revguard.CodeBotCheckFailed, "bot check failed: action mismatch")
	}
	return OutcomeSuccess, nil
}

// attemptResult is the result of one siteverify call: a decoded answer, or an error that
// is worth one retry (retry) or not (an odd answer).
type attemptResult struct {
	resp  *response
	retry bool
	err   error
}

// attempt sends one siteverify request with its own deadline.
func (c *BotChecker) attempt(ctx context.Context, body string) attemptResult {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, strings.NewReader(body))
	if err != nil {
		// Only a malformed URL gets here: our configuration, not the customer.
		return attemptResult{retry: true, err: fmt.Errorf("turnstile: build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.client().Do(req)
	if err != nil {
		return attemptResult{retry: true, err: fmt.Errorf("turnstile: post siteverify: %w", err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		// Drain a little so the connection can be reused; the content does not matter.
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodySize))
		return attemptResult{retry: true, err: fmt.Errorf("turnstile: siteverify status %d", resp.StatusCode)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize+1))
	if err != nil {
		return attemptResult{retry: true, err: fmt.Errorf("turnstile: read siteverify answer: %w", err)}
	}
	if len(data) > maxBodySize {
		return attemptResult{err: fmt.Errorf("turnstile: siteverify answer larger than %d bytes", maxBodySize)}
	}
	// 200 is the documented answer; Cloudflare may also explain a 4xx with the same JSON
	// (bad-request). Anything else (a redirect, 1xx, 204...) is odd.
	if resp.StatusCode != http.StatusOK && (resp.StatusCode < 400 || resp.StatusCode > 499) {
		return attemptResult{err: fmt.Errorf("turnstile: unexpected siteverify status %d", resp.StatusCode)}
	}
	r, err := decodeResponse(data)
	if err != nil {
		return attemptResult{err: err}
	}
	if resp.StatusCode != http.StatusOK && (r.Success || !r.namesToken() && !r.misconfigured() && !r.has(codeBadRequest)) {
		// A success, or a refusal that names neither the token nor our request, with a
		// status other than 200: another API's JSON (a wrong --turnstile-url), not a verdict.
		return attemptResult{err: fmt.Errorf("turnstile: siteverify status %d without a documented error code", resp.StatusCode)}
	}
	if !r.Success && r.has(codeInternalError) {
		return attemptResult{retry: true, err: errors.New("turnstile: siteverify internal-error")}
	}
	return attemptResult{resp: r}
}

func (c *BotChecker) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c *BotChecker) client() *http.Client {
	if c.Client == nil {
		return http.DefaultClient
	}
	return c.Client
}

// The kinds of log message that are throttled, each on its own.
const (
	logUnavailable = iota
	logUntrusted
	logMisconfigured
	logBadRequest
	logMismatch
	numLogKinds
)

// logThrottle lets one message of its kind through per second; the next one that passes
// reports how many were suppressed in between.
type logThrottle struct {
	next       atomic.Int64 // unix nanoseconds before which messages are suppressed
	suppressed atomic.Int64
}

// log writes a message of the given kind unless one went out less than a second ago.
func (c *BotChecker) log(kind int, level slog.Level, msg string, args ...any) {
	t := &c.throttles[kind]
	now := time.Now().UnixNano()
	next := t.next.Load()
	if now < next || !t.next.CompareAndSwap(next, now+int64(time.Second)) {
		t.suppressed.Add(1)
		return
	}
	if n := t.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	c.logger().Log(context.Background(), level, msg, args...)
}

func (c *BotChecker) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}
