package turnstile_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/testlog"
	"github.com/revenueguard/revguard/turnstile"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// attemptTimeout is short so that the hanging-verifier cases stay quick; the others
// get checkTimeout, generous enough for 32 checks at once under the race detector on a
// busy machine.
const (
	attemptTimeout = 250 * time.Millisecond
	checkTimeout   = 5 * time.Second
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// clock is an injectable clock for the fake's token expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// MustStartFake starts a fake verifier on 127.0.0.1 with an injected clock.
func MustStartFake(tb testing.TB) (*turnstiletest.Server, *clock) {
	tb.Helper()
	clk := &clock{now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	fake := turnstiletest.New()
	fake.Now = clk.Now
	if err := fake.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(fake.Close)
	return fake, clk
}

// MustNewChecker returns a checker for url whose logs are kept in logs and which
// records the outcome of each Verify.
func MustNewChecker(tb testing.TB, url, secret string) (c *turnstile.BotChecker, logs *testlog.Buffer, outcomes *[]string) {
	tb.Helper()
	logs = &testlog.Buffer{}
	outcomes = new([]string)
	var mu sync.Mutex
	c = turnstile.NewBotChecker(secret)
	c.URL = url
	c.Timeout = checkTimeout
	c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c.OnVerify = func(outcome string, d time.Duration) {
		if d < 0 {
			tb.Errorf("OnVerify duration %v < 0", d)
		}
		mu.Lock()
		defer mu.Unlock()
		*outcomes = append(*outcomes, outcome)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("checker log:\n%s", logs)
		}
		if s := logs.String(); secret != "" && strings.Contains(s, secret) {
			tb.Errorf("the secret appears in the log:\n%s", s)
		}
	})
	return c, logs, outcomes
}

func TestVerify(t *testing.T) {
	for _, tt := range []struct {
		name     string
		secret   string                                                            // default: the fake's own secret
		noSecret bool                                                              // send an empty secret
		prepare  func(t *testing.T, fake *turnstiletest.Server, clk *clock) string // returns the token
		want     revguard.Code
		outcome  string
		calls    int64 // siteverify requests that reached the fake
		hangs    bool  // the verifier does not answer an attempt: attemptTimeout
	}{
		{name: "OK", want: "", outcome: turnstile.OutcomeSuccess, calls: 1,
			prepare: func(t *testing.T, f *turnstiletest.Server, _ *clock) string { return f.Token() }},
		{name: "OKJustBeforeExpiry", want: "", outcome: turnstile.OutcomeSuccess, calls: 1,
			prepare: func(t *testing.T, f *turnstiletest.Server, clk *clock) string {
				tok := f.Token()
				clk.Advance(turnstiletest.TokenTTL)
				return tok
			}},
		{name: "OKPassSecretDummyToken", secret: turnstiletest.PassSecret, outcome: turnstile.OutcomeSuccess, calls: 1,
			prepare: func(*testing.T, *turnstiletest.Server, *clock) string { return turnstiletest.DummyToken }},
		{name: "ErrFailSecret", secret: turnstiletest.FailSecret, want: revguard.CodeBotCheckFailed,
			outcome: turnstile.OutcomeFailed, calls: 1,
			prepare: func(*testing.T, *turnstiletest.Server, *clock) string { return turnstiletest.DummyToken }},
		{name: "ErrSpentSecret", secret: turnstiletest.SpentSecret, want: revguard.CodeBotCheckFailed,
			outcome: turnstile.OutcomeFailed, calls: 1,
			prepare: func(*testing.T, *turnstiletest.Server, *clock) string { return turnstiletest.DummyToken }},
		{name: "ErrDuplicate", want: revguard.CodeBotCheckFailed, outcome: turnstile.OutcomeFailed, calls: 1,
			prepare: func(t *testing.T, f *turnstiletest.Server, _ *clock) string {
				tok := f.Token()
				c, _, _ := MustNewChecker(t, f.URL(), turnstiletest.DefaultSecret)
				if err := c.Verify(t.Context(), tok, "203.0.113.7"); err != nil {
					t.Fatalf("first use: %v", err)
				}
				return tok
			}},
		{name: "ErrExpired", want: revguard.CodeBotCheckFailed, outcome: turnstile.OutcomeFailed, calls: 1,
			prepare: func(t *testing.T, f *turnstiletest.Server, clk *clock) string {
				tok := f.Token()
				clk.Advance(turnstiletest.TokenTTL + time.Second)
				return tok
			}},
		{name: "ErrUnknownToken", want: revguard.CodeBotCheckFailed, outcome: turnstile.OutcomeFailed, calls: 1,
			prepare: func(*testing.T, *turnstiletest.Server, *clock) string { return "0.forged-token" }},
		{name: "ErrDummyTokenWithRealSecret", want: revguard.CodeBotCheckFailed, outcome: turnstile.OutcomeFailed, calls: 1,
			prepare: func(*testing.T, *turnstiletest.Server, *clock) string { return turnstiletest.DummyToken }},
		{name: "ErrEmptyTokenNoCall", want: revguard.CodeBotCheckFailed, outcome: turnstile.OutcomeRejected, calls: 0,
			prepare: func(*testing.T, *turnstiletest.Server, *clock) string { return "" }},
		{name: "ErrOversizedTokenNoCall", want: revguard.CodeBotCheckFailed, outcome: turnstile.OutcomeRejected, calls: 0,
			prepare: func(*testing.T, *turnstiletest.Server, *clock) string {
				return strings.Repeat("a", turnstile.MaxTokenLen+1)
			}},
		{name: "ErrMaxLengthTokenIsSent", want: revguard.CodeBotCheckFailed, outcome: turnstile.OutcomeFailed, calls: 1,
			prepare: func(*testing.T, *turnstiletest.Server, *clock) string {
				return strings.Repeat("a", turnstile.MaxTokenLen)
			}},
		{name: "RetryAfter500ReusesKey", outcome: turnstile.OutcomeSuccess, calls: 2,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.FailNext(1, turnstiletest.ModeError)
				return f.Token()
			}},
		{name: "RetryAfterInternalErrorReusesKey", outcome: turnstile.OutcomeSuccess, calls: 2,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.FailNext(1, turnstiletest.ModeInternalError)
				return f.Token()
			}},
		{name: "RetryAfterDroppedConnection", outcome: turnstile.OutcomeSuccess, calls: 2,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.FailNext(1, turnstiletest.ModeDrop)
				return f.Token()
			}},
		{name: "RetryAfterDeadline", outcome: turnstile.OutcomeSuccess, calls: 2, hangs: true,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.FailNext(1, turnstiletest.ModeHang)
				return f.Token()
			}},
		{name: "RetryAfterLostAnswerOfSpentToken", outcome: turnstile.OutcomeSuccess, calls: 2,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.FailNext(1, turnstiletest.ModeDropAnswer) // spends the token, loses the answer
				return f.Token()
			}},
		{name: "ErrUnavailableRefused", want: revguard.CodeBotCheckUnavailable, outcome: turnstile.OutcomeUnavailable, calls: 0,
			prepare: func(t *testing.T, f *turnstiletest.Server, _ *clock) string {
				if err := f.SetMode(turnstiletest.ModeRefuse); err != nil {
					t.Fatal(err)
				}
				return f.Token()
			}},
		{name: "ErrUnavailable500", want: revguard.CodeBotCheckUnavailable, outcome: turnstile.OutcomeUnavailable, calls: 2,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.SetMode(turnstiletest.ModeError)
				return f.Token()
			}},
		{name: "ErrUnavailableInternalError", want: revguard.CodeBotCheckUnavailable, outcome: turnstile.OutcomeUnavailable, calls: 2,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.SetMode(turnstiletest.ModeInternalError)
				return f.Token()
			}},
		{name: "ErrUnavailableDropped", want: revguard.CodeBotCheckUnavailable, outcome: turnstile.OutcomeUnavailable, calls: 2,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.SetMode(turnstiletest.ModeDrop)
				return f.Token()
			}},
		{name: "ErrUnavailableSlowVerifier", want: revguard.CodeBotCheckUnavailable, outcome: turnstile.OutcomeUnavailable, calls: 2, hangs: true,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string {
				f.SetMode(turnstiletest.ModeHang)
				return f.Token()
			}},
		{name: "ErrMisconfiguredSecret", secret: "0x-wrong-secret", want: revguard.CodeBotCheckUnavailable,
			outcome: turnstile.OutcomeMisconfigured, calls: 1,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string { return f.Token() }},
		{name: "ErrMissingSecret", noSecret: true, want: revguard.CodeBotCheckUnavailable,
			outcome: turnstile.OutcomeMisconfigured, calls: 1,
			prepare: func(_ *testing.T, f *turnstiletest.Server, _ *clock) string { return f.Token() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, clk := MustStartFake(t)
			secret := turnstiletest.DefaultSecret
			switch {
			case tt.noSecret:
				secret = ""
			case tt.secret != "":
				secret = tt.secret
			}
			token := tt.prepare(t, fake, clk)
			before, recorded := fake.Calls(), len(fake.Requests())
			c, logs, outcomes := MustNewChecker(t, fake.URL(), secret)
			if tt.hangs {
				c.Timeout = attemptTimeout
			}

			// A verifier that hangs (tt.hangs) is left by each attempt's own deadline:
			// t.Context() has none, so Verify returning at all shows it.
			err := c.Verify(t.Context(), token, "203.0.113.7")

			if got := revguard.ErrorCode(err); got != tt.want {
				t.Fatalf("Verify(%.20q) = %v (code %q), want code %q", token, err, got, tt.want)
			}
			if got := fake.Calls() - before; got != tt.calls {
				t.Errorf("siteverify calls = %d, want %d", got, tt.calls)
			}
			if len(*outcomes) != 1 || (*outcomes)[0] != tt.outcome {
				t.Errorf("OnVerify outcomes = %q, want [%q]", *outcomes, tt.outcome)
			}
			if tt.outcome == turnstile.OutcomeMisconfigured && !strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("a rejected secret is not logged at error level:\n%s", logs)
			}
			if s := logs.String(); token != "" && strings.Contains(s, token) {
				t.Errorf("the token appears in the log:\n%s", s)
			}
			reqs := fake.Requests()[recorded:]
			if int64(len(reqs)) != tt.calls {
				t.Fatalf("the fake recorded %d requests, want %d", len(reqs), tt.calls)
			}
			checkRequests(t, reqs, secret, token)
		})
	}
}

// checkRequests checks what the checker sent: the secret, the token, the client's
// address, and one idempotency key, a random UUID, shared by the attempts of one Verify.
func checkRequests(t *testing.T, reqs []turnstiletest.Request, secret, token string) {
	t.Helper()
	for i, r := range reqs {
		if r.Secret != secret || r.Token != token || r.RemoteIP != "203.0.113.7" {
			t.Errorf("request %d = {secret %q, token %.20q, remoteip %q}, want {%q, %.20q, 203.0.113.7}",
				i, r.Secret, r.Token, r.RemoteIP, secret, token)
		}
		if !uuidRE.MatchString(r.IdempotencyKey) {
			t.Errorf("request %d: idempotency_key %q is not a random UUID", i, r.IdempotencyKey)
		}
		if r.IdempotencyKey != reqs[0].IdempotencyKey {
			t.Errorf("request %d: idempotency_key %q, want the first attempt's %q", i, r.IdempotencyKey, reqs[0].IdempotencyKey)
		}
	}
}

func TestVerifyFreshKeyPerCall(t *testing.T) {
	fake, _ := MustStartFake(t)
	c, _, _ := MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
	for range 2 {
		if err := c.Verify(t.Context(), fake.Token(), ""); err != nil {
			t.Fatal(err)
		}
	}
	reqs := fake.Requests()
	if len(reqs) != 2 || reqs[0].IdempotencyKey == reqs[1].IdempotencyKey {
		t.Fatalf("two Verify calls sent keys %+v, want two different keys", reqs)
	}
	if reqs[0].RemoteIP != "" {
		t.Errorf("remoteip %q sent for an empty address", reqs[0].RemoteIP)
	}
}

func TestVerifyHostnameAction(t *testing.T) {
	for _, tt := range []struct {
		name             string
		hostname, action string // expected by the checker
		challenge        turnstiletest.Challenge
		want             revguard.Code
	}{
		{"OKNoExpectation", "", "", turnstiletest.Challenge{Hostname: "anything.example", Action: "x"}, ""},
		{"OKBoth", "shop.example", "reserve", turnstiletest.Challenge{Hostname: "shop.example", Action: "reserve"}, ""},
		{"OKHostnameCase", "Shop.Example", "", turnstiletest.Challenge{Hostname: "shop.example"}, ""},
		{"ErrHostname", "shop.example", "", turnstiletest.Challenge{Hostname: "evil.example"}, revguard.CodeBotCheckFailed},
		{"ErrHostnameMissing", "shop.example", "", turnstiletest.Challenge{}, revguard.CodeBotCheckFailed},
		{"ErrAction", "", "reserve", turnstiletest.Challenge{Hostname: "shop.example", Action: "login"}, revguard.CodeBotCheckFailed},
		{"ErrActionCase", "", "reserve", turnstiletest.Challenge{Action: "Reserve"}, revguard.CodeBotCheckFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, _ := MustStartFake(t)
			c, _, outcomes := MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
			c.Hostname, c.Action = tt.hostname, tt.action
			err := c.Verify(t.Context(), fake.TokenFor(tt.challenge), "")
			if got := revguard.ErrorCode(err); got != tt.want {
				t.Fatalf("Verify = %v, want code %q", err, tt.want)
			}
			if tt.want != "" && (*outcomes)[0] != turnstile.OutcomeMismatch {
				t.Errorf("outcome %q, want %q", (*outcomes)[0], turnstile.OutcomeMismatch)
			}
		})
	}
}

// TestVerifyOddAnswers serves hand-written answers: anything but a clean, documented
// success is a refusal. An answer that is no verdict on the token (odd, or a refusal of
// our request) is "unavailable" like an unreachable verifier, never the customer's
// "failed": with a wrong --turnstile-url every buyer would otherwise be told to solve the
// challenge again, for ever.
func TestVerifyOddAnswers(t *testing.T) {
	const ok = `{"success":true,"error-codes":[],"challenge_ts":"2026-11-27T10:00:00.000Z","hostname":"localhost"}`
	for _, tt := range []struct {
		name   string
		status int
		ctype  string
		body   string
		want   revguard.Code
		calls  int
	}{
		// A verdict on the token: the customer's to fix.
		{"RefusedToken", 200, "application/json", `{"success":false,"error-codes":["invalid-input-response"]}`, revguard.CodeBotCheckFailed, 1},
		{"RefusedNoCodes", 200, "application/json", `{"success":false,"error-codes":[]}`, revguard.CodeBotCheckFailed, 1},
		{"OK", 200, "application/json", ok, "", 1},
		{"OKUnknownFields", 200, "application/json",
			`{"success":true,"error-codes":[],"metadata":{"interactive":false},"messages":[]}`, "", 1},
		{"ErrHTML", 200, "text/html", `<html>Just a moment...</html>`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrEmpty", 200, "application/json", ``, revguard.CodeBotCheckUnavailable, 1},
		{"ErrNoSuccess", 200, "application/json", `{"error-codes":[]}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrSuccessNull", 200, "application/json", `{"success":null}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrSuccessString", 200, "application/json", `{"success":"true"}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrSuccessCase", 200, "application/json", `{"Success":true}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrDuplicateKey", 200, "application/json", `{"success":false,"success":true}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrTrailing", 200, "application/json", ok + `{}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrArray", 200, "application/json", `[` + ok + `]`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrSuccessWithCodes", 200, "application/json", `{"success":true,"error-codes":["bad-request"]}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrBadTimestamp", 200, "application/json", `{"success":true,"challenge_ts":"yesterday"}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrCodesNotStrings", 200, "application/json", `{"success":false,"error-codes":[1]}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrOversizedBody", 200, "application/json",
			`{"success":true,"cdata":"` + strings.Repeat("x", 1<<20) + `"}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrBadRequest400", 400, "application/json", `{"success":false,"error-codes":["bad-request"]}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrSuccessWith400", 400, "application/json", ok, revguard.CodeBotCheckUnavailable, 1},
		{"Err404", 404, "text/plain", `not found`, revguard.CodeBotCheckUnavailable, 1},
		// Another API's JSON at a wrong URL: no verdict, however it is shaped.
		{"ErrJSON404", 404, "application/json", `{"success":false,"errors":[{"code":7003,"message":"Could not route"}],"messages":[],"result":null}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrJSON401NoCodes", 401, "application/json", `{"success":false}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrJSON405NoCodes", 405, "application/json", `{"success":false,"error-codes":[]}`, revguard.CodeBotCheckUnavailable, 1},
		// Refusals of our secret or widget, and codes this checker does not know.
		{"ErrInvalidWidget", 200, "application/json", `{"success":false,"error-codes":["invalid-widget-id"]}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrParsedSecret", 200, "application/json", `{"success":false,"error-codes":["invalid-parsed-secret"]}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrSecretAndToken", 200, "application/json", `{"success":false,"error-codes":["invalid-input-secret","invalid-input-response"]}`, revguard.CodeBotCheckUnavailable, 1},
		{"ErrUnknownCode", 200, "application/json", `{"success":false,"error-codes":["something-new"]}`, revguard.CodeBotCheckUnavailable, 1},
		// A code about the token wins over bad-request, with a 200 or a 400.
		{"RefusedTokenAndBadRequest", 200, "application/json", `{"success":false,"error-codes":["bad-request","invalid-input-response"]}`, revguard.CodeBotCheckFailed, 1},
		{"RefusedToken400", 400, "application/json", `{"success":false,"error-codes":["timeout-or-duplicate"]}`, revguard.CodeBotCheckFailed, 1},
		{"ErrNoContent", 204, "", ``, revguard.CodeBotCheckUnavailable, 1},
		{"ErrRedirectNotFollowed", 307, "", ``, revguard.CodeBotCheckUnavailable, 1},
		{"ErrUnavailable503", 503, "text/html", `<html>down</html>`, revguard.CodeBotCheckUnavailable, 2},
		{"ErrUnavailable429", 429, "", ``, revguard.CodeBotCheckUnavailable, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu    sync.Mutex
				calls int
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				calls++
				mu.Unlock()
				if tt.status == 307 {
					// A redirect to an answer that would pass: never followed.
					w.Header().Set("Location", "/elsewhere")
				}
				if r.URL.Path == "/elsewhere" {
					w.Write([]byte(ok))
					return
				}
				if tt.ctype != "" {
					w.Header().Set("Content-Type", tt.ctype)
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			c, _, outcomes := MustNewChecker(t, srv.URL, "k3y-0dd-answ3rs")
			err := c.Verify(t.Context(), "token", "")
			if got := revguard.ErrorCode(err); got != tt.want {
				t.Fatalf("answer %d %.60q: Verify = %v, want code %q", tt.status, tt.body, err, tt.want)
			}
			wantOutcome := map[revguard.Code]string{
				"":                               turnstile.OutcomeSuccess,
				revguard.CodeBotCheckFailed:      turnstile.OutcomeFailed,
				revguard.CodeBotCheckUnavailable: turnstile.OutcomeInvalidResponse,
			}[tt.want]
			switch {
			case tt.status >= 500 || tt.status == 429:
				wantOutcome = turnstile.OutcomeUnavailable
			case tt.name == "ErrBadRequest400" || tt.name == "ErrInvalidWidget" || tt.name == "ErrParsedSecret" || tt.name == "ErrSecretAndToken":
				wantOutcome = turnstile.OutcomeMisconfigured
			}
			if got := *outcomes; len(got) != 1 || got[0] != wantOutcome {
				t.Errorf("outcomes %q, want [%s]", got, wantOutcome)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls != tt.calls {
				t.Errorf("calls = %d, want %d", calls, tt.calls)
			}
		})
	}
}

func TestVerifyCanceledContext(t *testing.T) {
	fake, _ := MustStartFake(t)
	fake.SetMode(turnstiletest.ModeHang)
	c, _, _ := MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
	c.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := c.Verify(ctx, fake.Token(), "")
	if got := revguard.ErrorCode(err); got != revguard.CodeBotCheckUnavailable {
		t.Fatalf("Verify = %v, want %q", err, revguard.CodeBotCheckUnavailable)
	}
	if got := fake.Calls(); got != 1 {
		t.Errorf("calls = %d, want 1: no retry once the caller gave up", got)
	}
}

// TestVerifyConcurrentSameToken races many checks of one token: exactly one passes.
func TestVerifyConcurrentSameToken(t *testing.T) {
	fake, _ := MustStartFake(t)
	c, _, _ := MustNewChecker(t, fake.URL(), turnstiletest.DefaultSecret)
	tok := fake.Token()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		passed int
	)
	for range 32 {
		wg.Go(func() {
			if err := c.Verify(t.Context(), tok, ""); err == nil {
				mu.Lock()
				passed++
				mu.Unlock()
			} else if revguard.ErrorCode(err) != revguard.CodeBotCheckFailed {
				t.Errorf("Verify = %v, want pass or %q", err, revguard.CodeBotCheckFailed)
			}
		})
	}
	wg.Wait()
	if passed != 1 {
		t.Fatalf("%d checks of one token passed, want exactly 1", passed)
	}
}

func TestVerifyInProcessClient(t *testing.T) {
	fake := turnstiletest.New()
	t.Cleanup(fake.Close)
	c, _, _ := MustNewChecker(t, "http://verifier.invalid"+turnstiletest.Path, turnstiletest.DefaultSecret)
	c.Client = fake.Client()
	if err := c.Verify(t.Context(), fake.Token(), ""); err != nil {
		t.Fatalf("Verify through the in-process client: %v", err)
	}
	fake.SetMode(turnstiletest.ModeRefuse)
	if err := c.Verify(t.Context(), fake.Token(), ""); revguard.ErrorCode(err) != revguard.CodeBotCheckUnavailable {
		t.Fatalf("Verify with the in-process fake refusing = %v, want %q", err, revguard.CodeBotCheckUnavailable)
	}
}

// TestVerifyLogThrottled checks that a misconfiguration seen on every request is logged
// loudly once, not once per request.
func TestVerifyLogThrottled(t *testing.T) {
	fake, _ := MustStartFake(t)
	c, logs, _ := MustNewChecker(t, fake.URL(), "0x-wrong-secret")
	for range 20 {
		err := c.Verify(t.Context(), fake.Token(), "")
		if got := revguard.ErrorCode(err); got != revguard.CodeBotCheckUnavailable {
			t.Fatalf("Verify = %v, want %q", err, revguard.CodeBotCheckUnavailable)
		}
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d error lines for 20 checks with a wrong secret, want 1:\n%s", n, logs)
	}
}
