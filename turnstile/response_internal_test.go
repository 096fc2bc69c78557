package turnstile

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
)

// answerSeeds are siteverify answers, documented and odd, for the table test and as fuzz
// seeds. ok says whether decodeResponse must accept the answer; success, what it says.
var answerSeeds = []struct {
	name    string
	body    string
	ok      bool
	success bool
}{
	// Cloudflare's documented answers.
	{"DocSuccess", `{"success":true,"challenge_ts":"2022-02-28T15:14:30.096Z","hostname":"example.com","error-codes":[],"action":"login","cdata":"sessionid-123456789"}`, true, true},
	{"DocFailure", `{"success":false,"error-codes":["invalid-input-response"]}`, true, false},
	{"DocDuplicate", `{"success":false,"error-codes":["timeout-or-duplicate"]}`, true, false},
	{"DocInternal", `{"success":false,"error-codes":["internal-error"]}`, true, false},
	{"Metadata", `{"success":true,"error-codes":[],"metadata":{"interactive":false},"messages":[]}`, true, true},
	{"NullCodes", `{"success":false,"error-codes":null}`, true, false},
	{"Whitespace", " \n{ \"success\" : true }\n ", true, true},
	{"TimestampOffset", `{"success":true,"challenge_ts":"2026-11-27T11:00:00+01:00"}`, true, true},
	// Odd answers: refused.
	{"Empty", ``, false, false},
	{"Null", `null`, false, false},
	{"Array", `[{"success":true}]`, false, false},
	{"String", `"success"`, false, false},
	{"NoSuccess", `{"error-codes":[]}`, false, false},
	{"SuccessNull", `{"success":null}`, false, false},
	{"SuccessString", `{"success":"true"}`, false, false},
	{"SuccessNumber", `{"success":1}`, false, false},
	{"SuccessCase", `{"SUCCESS":true}`, false, false},
	{"Duplicate", `{"success":false,"success":true}`, false, false},
	{"DuplicateHostname", `{"success":true,"hostname":"a","hostname":"b"}`, false, false},
	{"Trailing", `{"success":true}{"success":false}`, false, false},
	{"TrailingGarbage", `{"success":true} x`, false, false},
	{"Unterminated", `{"success":true`, false, false},
	{"SuccessWithCodes", `{"success":true,"error-codes":["internal-error"]}`, false, false},
	{"CodesNotArray", `{"success":false,"error-codes":"bad-request"}`, false, false},
	{"CodesNotStrings", `{"success":false,"error-codes":[{}]}`, false, false},
	{"HostnameNotString", `{"success":true,"hostname":7}`, false, false},
	{"BadTimestamp", `{"success":true,"challenge_ts":"28/02/2022"}`, false, false},
	{"HTML", `<!DOCTYPE html><title>Just a moment...</title>`, false, false},
	{"InvalidUTF8Key", "{\"succ\xffess\":true}", false, false},
	{"DeepUnknown", `{"success":true,"x":[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]}`, true, true},
}

func TestDecodeResponse(t *testing.T) {
	for _, tt := range answerSeeds {
		t.Run(tt.name, func(t *testing.T) {
			r, err := decodeResponse([]byte(tt.body))
			if (err == nil) != tt.ok {
				t.Fatalf("decodeResponse(%q) error = %v, want ok = %v", tt.body, err, tt.ok)
			}
			if err == nil && r.Success != tt.success {
				t.Errorf("decodeResponse(%q).Success = %v, want %v", tt.body, r.Success, tt.success)
			}
		})
	}
}

// FuzzDecodeResponse checks that decodeResponse never panics and that whatever it takes
// for a success, a plain encoding/json reading agrees is one: a single JSON object whose
// success is the boolean true and whose error-codes, if any, are empty.
func FuzzDecodeResponse(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s.body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeResponse(data)
		if err != nil {
			return // refused: fail closed
		}
		var ref map[string]any
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&ref); err != nil || ref == nil {
			t.Fatalf("decodeResponse accepted %q, which is not a JSON object (%v)", data, err)
		}
		if dec.More() {
			t.Fatalf("decodeResponse accepted %q, which has trailing data", data)
		}
		success, ok := ref["success"].(bool)
		if !ok || success != r.Success {
			t.Fatalf("decodeResponse(%q).Success = %v; encoding/json reads success %v", data, r.Success, ref["success"])
		}
		if r.Success {
			if codes, _ := ref["error-codes"].([]any); len(codes) > 0 {
				t.Fatalf("decodeResponse(%q) is a success with error codes %v", data, codes)
			}
			c := &BotChecker{Hostname: "shop.example", Action: "reserve", Logger: slog.New(slog.DiscardHandler)}
			if outcome, err := c.judge(r, "k"); err == nil &&
				(!strings.EqualFold(r.Hostname, "shop.example") || r.Action != "reserve") {
				t.Fatalf("judge(%q) = %s with hostname %q action %q", data, outcome, r.Hostname, r.Action)
			}
			return
		}
		// A refusal blames the token (403) only when it says so, or says nothing, and
		// does not name our secret or widget; any other refusal is unavailable (503).
		c := &BotChecker{Logger: slog.New(slog.DiscardHandler)}
		_, err = c.judge(r, "k")
		token := len(r.ErrorCodes) == 0
		ours := false
		for _, code := range r.ErrorCodes {
			switch code {
			case codeInvalidResponse, codeDuplicate, codeMissingResponse:
				token = true
			case codeMissingSecret, codeInvalidSecret, codeInvalidWidget, codeParsedSecret:
				ours = true
			}
		}
		want := revguard.CodeBotCheckUnavailable
		if token && !ours {
			want = revguard.CodeBotCheckFailed
		}
		if got := revguard.ErrorCode(err); got != want {
			t.Fatalf("judge(%q) = %v, want %s", data, err, want)
		}
	})
}
