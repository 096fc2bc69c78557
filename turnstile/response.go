package turnstile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The error codes of a siteverify answer (Cloudflare's documented list).
const (
	codeMissingSecret   = "missing-input-secret"
	codeInvalidSecret   = "invalid-input-secret"
	codeMissingResponse = "missing-input-response"
	codeInvalidResponse = "invalid-input-response"
	codeBadRequest      = "bad-request"
	codeDuplicate       = "timeout-or-duplicate"
	codeInternalError   = "internal-error"
	codeInvalidWidget   = "invalid-widget-id"
	codeParsedSecret    = "invalid-parsed-secret"
)

// verdict reports whether a refusal is about the token: a code that names it, or no code
// at all (the verifier said no without saying why).
func (r *response) verdict() bool { return len(r.ErrorCodes) == 0 || r.namesToken() }

// namesToken reports whether a refusal carries a code about the token.
func (r *response) namesToken() bool {
	return r.has(codeMissingResponse) || r.has(codeInvalidResponse) || r.has(codeDuplicate)
}

// misconfigured reports whether a refusal is about this server's secret or widget.
func (r *response) misconfigured() bool {
	return r.has(codeMissingSecret) || r.has(codeInvalidSecret) || r.has(codeInvalidWidget) || r.has(codeParsedSecret)
}

// response is a decoded siteverify answer.
type response struct {
	Success     bool
	ErrorCodes  []string
	ChallengeTS time.Time // zero when absent
	Hostname    string
	Action      string
	CData       string
}

func (r *response) has(code string) bool { return slices.Contains(r.ErrorCodes, code) }

// reason is a short client-safe explanation of a refusal.
func (r *response) reason() string {
	switch {
	case r.has(codeDuplicate):
		return "token expired or already used"
	case r.has(codeInvalidResponse):
		return "token invalid or expired"
	case r.has(codeMissingResponse):
		return "token missing"
	default:
		return "token refused"
	}
}

// decodeResponse reads a siteverify answer strictly: one JSON object, no trailing data,
// no duplicate keys, the documented fields with their documented types, and a success
// field that is present. A success with error codes is contradictory and refused too.
// Unknown fields (Cloudflare adds some, such as metadata) are skipped.
func decodeResponse(data []byte) (*response, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("turnstile: siteverify answer is not a JSON object")
	}
	var (
		r       response
		success *bool
		ts      *string
		seen    = make(map[string]bool, 8)
	)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("turnstile: decode siteverify answer: %w", err)
		}
		key, ok := t.(string)
		if !ok {
			return nil, errors.New("turnstile: decode siteverify answer: object key is not a string")
		}
		if seen[key] {
			return nil, fmt.Errorf("turnstile: siteverify answer repeats field %q", key)
		}
		seen[key] = true
		var dst any
		switch key {
		case "success":
			dst = &success
		case "error-codes":
			dst = &r.ErrorCodes
		case "challenge_ts":
			dst = &ts
		case "hostname":
			dst = &r.Hostname
		case "action":
			dst = &r.Action
		case "cdata":
			dst = &r.CData
		default:
			dst = new(json.RawMessage)
		}
		if err := dec.Decode(dst); err != nil {
			return nil, fmt.Errorf("turnstile: decode siteverify field %q: %w", key, err)
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errors.New("turnstile: siteverify answer: unterminated object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("turnstile: siteverify answer: trailing data")
	}
	if success == nil {
		return nil, errors.New("turnstile: siteverify answer without success")
	}
	r.Success = *success
	if r.Success && len(r.ErrorCodes) > 0 {
		return nil, fmt.Errorf("turnstile: siteverify answer is a success with error codes %s",
			strings.Join(r.ErrorCodes, ","))
	}
	if ts != nil && *ts != "" {
		t, err := time.Parse(time.RFC3339, *ts)
		if err != nil {
			return nil, fmt.Errorf("turnstile: siteverify challenge_ts: %w", err)
		}
		r.ChallengeTS = t
	}
	return &r, nil
}
