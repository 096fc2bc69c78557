package turnstiletest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

// MustStart starts a fake on 127.0.0.1 with an injected clock.
func MustStart(tb testing.TB) (*turnstiletest.Server, *clock) {
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

// answer is a decoded siteverify answer.
type answer struct {
	Success     bool     `json:"success"`
	ErrorCodes  []string `json:"error-codes"`
	ChallengeTS string   `json:"challenge_ts"`
	Hostname    string   `json:"hostname"`
	Action      string   `json:"action"`
	CData       string   `json:"cdata"`
}

// post sends a form-encoded siteverify request and decodes the answer.
func post(tb testing.TB, client *http.Client, u string, form url.Values) (int, answer) {
	tb.Helper()
	resp, err := client.PostForm(u, form)
	if err != nil {
		tb.Fatalf("post %v: %v", form, err)
	}
	defer resp.Body.Close()
	return decode(tb, resp)
}

func decode(tb testing.TB, resp *http.Response) (int, answer) {
	tb.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("Content-Type %q, want application/json", ct)
	}
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		tb.Fatalf("decode answer: %v", err)
	}
	return resp.StatusCode, a
}

func form(secret, token, key string) url.Values {
	v := url.Values{}
	if secret != "" {
		v.Set("secret", secret)
	}
	if token != "" {
		v.Set("response", token)
	}
	if key != "" {
		v.Set("idempotency_key", key)
	}
	v.Set("remoteip", "198.51.100.4")
	return v
}

func TestSiteverify(t *testing.T) {
	const key1, key2 = "5b4c7a52-5b9c-4c51-9d4e-0a4e2f1c9d01", "0f8e6a1b-7c2d-4e3f-8a9b-1c2d3e4f5a6b"
	for _, tt := range []struct {
		name  string
		steps func(t *testing.T, f *turnstiletest.Server, clk *clock) url.Values // returns the request to check
		want  []string                                                           // error codes; nil = success
	}{
		{"OK", func(_ *testing.T, f *turnstiletest.Server, _ *clock) url.Values {
			return form(turnstiletest.DefaultSecret, f.Token(), "")
		}, nil},
		{"OKPassSecretDummyToken", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.PassSecret, turnstiletest.DummyToken, "")
		}, nil},
		{"OKPassSecretAnyTokenTwice", func(t *testing.T, f *turnstiletest.Server, _ *clock) url.Values {
			mustPass(t, f, form(turnstiletest.PassSecret, "anything", ""))
			return form(turnstiletest.PassSecret, "anything", "")
		}, nil},
		{"OKSameIdempotencyKey", func(t *testing.T, f *turnstiletest.Server, _ *clock) url.Values {
			tok := f.Token()
			mustPass(t, f, form(turnstiletest.DefaultSecret, tok, key1))
			return form(turnstiletest.DefaultSecret, tok, key1)
		}, nil},
		{"ErrOtherIdempotencyKey", func(t *testing.T, f *turnstiletest.Server, _ *clock) url.Values {
			tok := f.Token()
			mustPass(t, f, form(turnstiletest.DefaultSecret, tok, key1))
			return form(turnstiletest.DefaultSecret, tok, key2)
		}, []string{"timeout-or-duplicate"}},
		{"ErrKeyOfAnotherToken", func(t *testing.T, f *turnstiletest.Server, _ *clock) url.Values {
			tok := f.Token()
			mustPass(t, f, form(turnstiletest.DefaultSecret, f.Token(), key1))
			mustPass(t, f, form(turnstiletest.DefaultSecret, tok, key2))
			return form(turnstiletest.DefaultSecret, tok, key1)
		}, []string{"timeout-or-duplicate"}},
		{"ErrDuplicateWithoutKey", func(t *testing.T, f *turnstiletest.Server, _ *clock) url.Values {
			tok := f.Token()
			mustPass(t, f, form(turnstiletest.DefaultSecret, tok, ""))
			return form(turnstiletest.DefaultSecret, tok, "")
		}, []string{"timeout-or-duplicate"}},
		{"ErrExpired", func(_ *testing.T, f *turnstiletest.Server, clk *clock) url.Values {
			tok := f.Token()
			clk.Advance(turnstiletest.TokenTTL + time.Millisecond)
			return form(turnstiletest.DefaultSecret, tok, "")
		}, []string{"timeout-or-duplicate"}},
		{"ErrUnknownToken", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.DefaultSecret, "0.made-up", "")
		}, []string{"invalid-input-response"}},
		{"ErrDummyTokenWithSiteSecret", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.DefaultSecret, turnstiletest.DummyToken, "")
		}, []string{"invalid-input-response"}},
		{"ErrTokenTooLong", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.PassSecret, strings.Repeat("t", turnstiletest.MaxTokenLen+1), "")
		}, []string{"invalid-input-response"}},
		{"ErrFailSecret", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.FailSecret, turnstiletest.DummyToken, "")
		}, []string{"invalid-input-response"}},
		{"ErrFailSecretAlias", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.FailSecretAlias, turnstiletest.DummyToken, "")
		}, []string{"invalid-input-response"}},
		{"ErrSpentSecret", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.SpentSecret, turnstiletest.DummyToken, "")
		}, []string{"timeout-or-duplicate"}},
		{"ErrSpentSecretAlias", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.SpentSecretAlias, turnstiletest.DummyToken, "")
		}, []string{"timeout-or-duplicate"}},
		{"ErrMissingSecret", func(_ *testing.T, f *turnstiletest.Server, _ *clock) url.Values {
			return form("", f.Token(), "")
		}, []string{"missing-input-secret"}},
		{"ErrInvalidSecret", func(_ *testing.T, f *turnstiletest.Server, _ *clock) url.Values {
			return form("0x-not-ours", f.Token(), "")
		}, []string{"invalid-input-secret"}},
		{"ErrMissingResponse", func(*testing.T, *turnstiletest.Server, *clock) url.Values {
			return form(turnstiletest.DefaultSecret, "", "")
		}, []string{"missing-input-response"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, clk := MustStart(t)
			req := tt.steps(t, fake, clk)
			calls := fake.Calls()
			status, a := post(t, http.DefaultClient, fake.URL(), req)
			if status != http.StatusOK {
				t.Errorf("status %d, want 200", status)
			}
			if got := fake.Calls() - calls; got != 1 {
				t.Errorf("Calls grew by %d, want 1", got)
			}
			if tt.want == nil {
				if !a.Success || len(a.ErrorCodes) != 0 || a.Hostname != "localhost" {
					t.Fatalf("answer %+v, want a success on localhost", a)
				}
				if _, err := time.Parse(time.RFC3339, a.ChallengeTS); err != nil {
					t.Errorf("challenge_ts %q: %v", a.ChallengeTS, err)
				}
				return
			}
			if a.Success || !equal(a.ErrorCodes, tt.want) {
				t.Fatalf("answer %+v, want success false with %q", a, tt.want)
			}
			reqs := fake.Requests()
			last := reqs[len(reqs)-1]
			if last.Token != req.Get("response") || last.Secret != req.Get("secret") ||
				last.RemoteIP != "198.51.100.4" || last.IdempotencyKey != req.Get("idempotency_key") ||
				last.Success || !equal(last.ErrorCodes, tt.want) {
				t.Errorf("recorded %+v for request %v", last, req)
			}
		})
	}
}

func mustPass(tb testing.TB, f *turnstiletest.Server, req url.Values) {
	tb.Helper()
	if _, a := post(tb, http.DefaultClient, f.URL(), req); !a.Success {
		tb.Fatalf("setup request %v: %+v", req, a)
	}
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestSiteverifyChallenge(t *testing.T) {
	fake, clk := MustStart(t)
	issued := clk.Now()
	tok := fake.TokenFor(turnstiletest.Challenge{Hostname: "shop.example", Action: "reserve", CData: "c-42"})
	clk.Advance(time.Minute)
	_, a := post(t, http.DefaultClient, fake.URL(), form(turnstiletest.DefaultSecret, tok, ""))
	ts, err := time.Parse(time.RFC3339, a.ChallengeTS)
	if !a.Success || a.Hostname != "shop.example" || a.Action != "reserve" || a.CData != "c-42" ||
		err != nil || !ts.Equal(issued) {
		t.Fatalf("answer %+v, want success for shop.example/reserve/c-42 solved at %v", a, issued)
	}
}

func TestSiteverifyEncodings(t *testing.T) {
	fake, _ := MustStart(t)
	t.Run("JSON", func(t *testing.T) {
		body, _ := json.Marshal(map[string]string{"secret": turnstiletest.DefaultSecret, "response": fake.Token(),
			"idempotency_key": "k1"})
		resp, err := http.Post(fake.URL(), "application/json; charset=utf-8", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, a := decode(t, resp); !a.Success {
			t.Fatalf("JSON request: %+v", a)
		}
	})
	t.Run("Multipart", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("secret", turnstiletest.DefaultSecret)
		mw.WriteField("response", fake.Token())
		mw.Close()
		resp, err := http.Post(fake.URL(), mw.FormDataContentType(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, a := decode(t, resp); !a.Success {
			t.Fatalf("multipart request: %+v", a)
		}
	})
	for _, tt := range []struct{ name, ctype, body string }{
		{"ErrContentType", "text/plain", "secret=x&response=y"},
		{"ErrNoContentType", "", "secret=x&response=y"},
		{"ErrJSON", "application/json", `{"secret":`},
		{"ErrJSONTrailing", "application/json", `{"secret":"x"} {}`},
		{"ErrJSONType", "application/json", `{"secret":1}`},
		{"ErrTooLarge", "application/x-www-form-urlencoded", "secret=" + strings.Repeat("x", 65<<10)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, fake.URL(), strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if status, a := decode(t, resp); status != http.StatusBadRequest || a.Success || !equal(a.ErrorCodes, []string{"bad-request"}) {
				t.Fatalf("got %d %+v, want 400 bad-request", status, a)
			}
		})
	}
	t.Run("ErrMethod", func(t *testing.T) {
		resp, err := http.Get(fake.URL())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
			t.Fatalf("GET: %d Allow %q, want 405 Allow POST", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
	t.Run("ErrPath", func(t *testing.T) {
		resp, err := http.PostForm(strings.TrimSuffix(fake.URL(), turnstiletest.Path)+"/other", form("a", "b", ""))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("other path: %d, want 404", resp.StatusCode)
		}
	})
}

// TestModes checks each way of being down, over the network and in process.
func TestModes(t *testing.T) {
	fake, _ := MustStart(t)
	clients := map[string]*http.Client{
		"Network":   {Timeout: 300 * time.Millisecond, Transport: &http.Transport{}},
		"InProcess": fake.Client(),
	}
	for name, client := range clients {
		t.Run(name, func(t *testing.T) {
			check := func(mode turnstiletest.Mode, wantStatus int, wantErr bool, wantCalls int64) {
				t.Helper()
				if err := fake.SetMode(mode); err != nil {
					t.Fatal(err)
				}
				calls := fake.Calls()
				ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fake.URL(),
					strings.NewReader(form(turnstiletest.PassSecret, "x", "").Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := client.Do(req)
				if (err != nil) != wantErr {
					t.Fatalf("mode %v: error %v, want error %v", mode, err, wantErr)
				}
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != wantStatus {
						t.Fatalf("mode %v: status %d, want %d", mode, resp.StatusCode, wantStatus)
					}
				}
				if mode == turnstiletest.ModeRefuse && !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("mode refuse: %v, want connection refused", err)
				}
				if got := fake.Calls() - calls; got != wantCalls {
					t.Errorf("mode %v: Calls grew by %d, want %d", mode, got, wantCalls)
				}
			}
			check(turnstiletest.ModeUp, 200, false, 1)
			check(turnstiletest.ModeRefuse, 0, true, 0)
			check(turnstiletest.ModeUp, 200, false, 1) // back on the same address
			check(turnstiletest.ModeError, 500, false, 1)
			check(turnstiletest.ModeInternalError, 200, false, 1)
			check(turnstiletest.ModeDrop, 0, true, 1)
			check(turnstiletest.ModeDropAnswer, 0, true, 1)
			check(turnstiletest.ModeHang, 0, true, 1)
			check(turnstiletest.ModeUp, 200, false, 1)
		})
	}
}

func TestFailNext(t *testing.T) {
	fake, _ := MustStart(t)
	fake.FailNext(2, turnstiletest.ModeInternalError)
	var got []bool
	for range 3 {
		_, a := post(t, http.DefaultClient, fake.URL(), form(turnstiletest.PassSecret, "x", ""))
		got = append(got, a.Success)
	}
	if got[0] || got[1] || !got[2] || fake.Mode() != turnstiletest.ModeUp {
		t.Fatalf("successes %v after FailNext(2), want [false false true] and mode up", got)
	}
	reqs := fake.Requests()
	if reqs[0].Mode != turnstiletest.ModeInternalError || reqs[2].Mode != turnstiletest.ModeUp {
		t.Errorf("recorded modes %v, %v", reqs[0].Mode, reqs[2].Mode)
	}
}

func TestDropAnswerSpendsToken(t *testing.T) {
	fake, _ := MustStart(t)
	tok := fake.Token()
	fake.FailNext(1, turnstiletest.ModeDropAnswer)
	if _, err := http.PostForm(fake.URL(), form(turnstiletest.DefaultSecret, tok, "k")); err == nil {
		t.Fatal("ModeDropAnswer answered")
	}
	if _, a := post(t, http.DefaultClient, fake.URL(), form(turnstiletest.DefaultSecret, tok, "other")); a.Success {
		t.Fatal("a token verified in ModeDropAnswer was not spent")
	}
	if _, a := post(t, http.DefaultClient, fake.URL(), form(turnstiletest.DefaultSecret, tok, "k")); !a.Success {
		t.Fatal("the retry with the lost attempt's key did not get the same success")
	}
}

func TestRequestsKeepsTheLatest(t *testing.T) {
	fake := turnstiletest.New()
	t.Cleanup(fake.Close)
	client := fake.Client()
	const n = 1100
	for i := range n {
		post(t, client, "http://fake"+turnstiletest.Path, form(turnstiletest.PassSecret, "t", "k"+strconv.Itoa(i)))
	}
	reqs := fake.Requests()
	if len(reqs) != 1024 || reqs[0].IdempotencyKey != "k"+strconv.Itoa(n-1024) || reqs[1023].IdempotencyKey != "k"+strconv.Itoa(n-1) {
		t.Fatalf("Requests: %d, first %q last %q; want the latest 1024 in order",
			len(reqs), reqs[0].IdempotencyKey, reqs[len(reqs)-1].IdempotencyKey)
	}
	if fake.Calls() != n {
		t.Errorf("Calls = %d, want %d", fake.Calls(), n)
	}
}

// TestSweepForgetsOldTokens checks that memory stays bounded: tokens long expired are
// forgotten (they then fail as unknown rather than as expired).
func TestSweepForgetsOldTokens(t *testing.T) {
	fake, clk := MustStart(t)
	old := fake.Token()
	clk.Advance(3 * turnstiletest.TokenTTL)
	for range 4096 {
		fake.Token()
	}
	if _, a := post(t, http.DefaultClient, fake.URL(), form(turnstiletest.DefaultSecret, old, "")); !equal(a.ErrorCodes, []string{"invalid-input-response"}) {
		t.Fatalf("a token forgotten by the sweep answered %+v, want invalid-input-response", a)
	}
}

// TestConcurrentSingleUse races verifications of one token: exactly one succeeds.
func TestConcurrentSingleUse(t *testing.T) {
	fake, _ := MustStart(t)
	client := fake.Client()
	for range 20 {
		tok := fake.Token()
		var (
			wg sync.WaitGroup
			mu sync.Mutex
			ok int
		)
		for range 8 {
			wg.Go(func() {
				if _, a := post(t, client, fake.URL(), form(turnstiletest.DefaultSecret, tok, "")); a.Success {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if ok != 1 {
			t.Fatalf("%d of 8 concurrent verifications of one token succeeded, want 1", ok)
		}
	}
}

// FuzzSiteverifyRequest feeds arbitrary requests to the fake: it never panics, always
// answers the documented JSON, and only the pass secret can succeed (no token was issued).
func FuzzSiteverifyRequest(f *testing.F) {
	for _, seed := range []struct{ ctype, body string }{
		{"application/x-www-form-urlencoded", "secret=" + turnstiletest.PassSecret + "&response=x"}, // a pass
		{"application/x-www-form-urlencoded", "secret=%zz"},                                         // bad escape
		{"application/json", `{"secret":"` + turnstiletest.DefaultSecret + `","response":"t"}`},     // unknown token
		{"application/json", `{"secret":["a"]}`},                                                    // wrong type
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"secret\"\r\n\r\ns\r\n--x--\r\n"},
		{"multipart/form-data", "no boundary"},
		{"text/plain", ""},
		{";;;", "secret=a"},
	} {
		f.Add(seed.ctype, []byte(seed.body))
	}
	fake := turnstiletest.New()
	f.Cleanup(fake.Close)
	client := fake.Client()
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		req, err := http.NewRequest(http.MethodPost, "http://fake"+turnstiletest.Path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ctype)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("in-process request: %v", err)
		}
		defer resp.Body.Close()
		var a answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatalf("answer to %q %q is not JSON: %v", ctype, body, err)
		}
		if resp.StatusCode != 200 && resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if a.Success == (len(a.ErrorCodes) > 0) {
			t.Fatalf("answer %+v: success and error codes disagree", a)
		}
		reqs := fake.Requests()
		if last := reqs[len(reqs)-1]; a.Success && last.Secret != turnstiletest.PassSecret {
			t.Fatalf("success for secret %q", last.Secret)
		}
	})
}
