package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// Seeds of the decoder fuzzers: valid bodies, each kind of malformation the strict
// decoder must refuse, and the shapes where encoding/json is lax (duplicates, case,
// invalid UTF-8, surrogates).
var decodeSeeds = []string{
	``, `{}`, ` {} `, `{"quantity":1}`, `{"quantity":2,"turnstile_token":"t"}`,
	`{"quantity":null}`, `{"quantity":1.0}`, `{"quantity":1e0}`, `{"quantity":-0}`,
	`{"quantity":9223372036854775808}`, `{"Quantity":1}`, `{"quantity":1,"quantity":1}`,
	`{"turnstile_token":"\u00e9\ud83d\ude00"}`, `{"turnstile_token":"\udc00"}`, "{\"turnstile_token\":\"\xff\"}",
	`{"stock":5,"per_customer_limit":2,"hold_seconds":60,"opens_at":"2026-11-27T10:00:00Z"}`,
	`{"stock":5,"opens_at":null}`, `{"stock":0,"opens_at":"2026-11-27T10:00:00.123+02:00"}`,
	`{"customer_id":"c-42","ttl_seconds":3600}`, `{"order_ref":"o-1","revive":true}`,
	`{"a":{"b":[1,2,{"c":null}]}}`, `[]`, `"x"`, `1`, `null`, `{"quantity":1}garbage`, `{,}`,
	`{"quantity"`, `{"quantity":`, `{"turnstile_token":"\`, `{"turnstile_token":"\u12`,
	// Waiting room settings and joins.
	`{"admit_per_second":5}`, `{"admit_per_second":5,"pre_queue_seconds":60,"admission_seconds":30}`,
	`{"admit_per_second":5,"admission_seconds":null}`, `{"admit_per_second":0}`, `{"admit_per_second":5,"admission_seconds":0}`,
	`{"admit_per_second":5,"pre_queue_seconds":-1}`, `{"admit_per_second":5,"admit_per_second":6}`,
}

// FuzzDecodeReserve checks the reserve decoder: it never panics, every refusal is
// invalid_request, and whatever it accepts encoding/json also accepts, with the same
// values (the strict decoder may only be stricter).
func FuzzDecodeReserve(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeReserve(body)
		if err != nil {
			if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("decodeReserve(%q): %v, want invalid_request", body, err)
			}
			return
		}
		if len(body) == 0 {
			return
		}
		var ref struct {
			Quantity       *int64  `json:"quantity"`
			TurnstileToken *string `json:"turnstile_token"`
		}
		if err := strictUnmarshal(body, &ref); err != nil {
			t.Fatalf("decodeReserve accepted %q, encoding/json refuses it: %v", body, err)
		}
		want := reserveRequest{Quantity: 1}
		if ref.Quantity != nil {
			want.Quantity = *ref.Quantity
		}
		if ref.TurnstileToken != nil {
			want.TurnstileToken = *ref.TurnstileToken
		}
		if got != want {
			t.Fatalf("decodeReserve(%q) = %+v, encoding/json says %+v", body, got, want)
		}
	})
}

// FuzzDecodeSKU checks the SKU decoder like FuzzDecodeReserve, and that what it accepts
// is a valid update.
func FuzzDecodeSKU(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeSKU(body)
		if err != nil {
			if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("decodeSKU(%q): %v, want invalid_request", body, err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("decodeSKU(%q) accepted an invalid update %+v: %v", body, got, err)
		}
		var ref struct {
			Stock            *int64     `json:"stock"`
			PerCustomerLimit *int64     `json:"per_customer_limit"`
			HoldSeconds      *int64     `json:"hold_seconds"`
			OpensAt          *time.Time `json:"opens_at"`
		}
		if err := strictUnmarshal(body, &ref); err != nil {
			t.Fatalf("decodeSKU accepted %q, encoding/json refuses it: %v", body, err)
		}
		if ref.Stock == nil || *ref.Stock != got.Stock {
			t.Fatalf("decodeSKU(%q) stock %d, encoding/json says %v", body, got.Stock, ref.Stock)
		}
		if ref.OpensAt != nil && !ref.OpensAt.Equal(got.OpensAt) || ref.OpensAt == nil && !got.OpensAt.IsZero() {
			t.Fatalf("decodeSKU(%q) opens_at %v, encoding/json says %v", body, got.OpensAt, ref.OpensAt)
		}
	})
}

// FuzzDecodeSession checks the session decoder: refusals are invalid_request and an
// accepted customer id is valid.
func FuzzDecodeSession(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeSession(body)
		if err != nil {
			if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("decodeSession(%q): %v, want invalid_request", body, err)
			}
			return
		}
		if !revguard.ValidCustomerID(got.CustomerID) || got.TTL < revguard.MinSessionTTL || got.TTL > revguard.MaxSessionTTL {
			t.Fatalf("decodeSession(%q) accepted %+v", body, got)
		}
		var ref struct {
			CustomerID string `json:"customer_id"`
			TTLSeconds *int64 `json:"ttl_seconds"`
		}
		if err := strictUnmarshal(body, &ref); err != nil || ref.CustomerID != got.CustomerID {
			t.Fatalf("decodeSession accepted %q as %+v, encoding/json says %+v, %v", body, got, ref, err)
		}
	})
}

// FuzzDecodeConfirm checks the confirm decoder.
func FuzzDecodeConfirm(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeConfirm(body)
		if err != nil {
			if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("decodeConfirm(%q): %v, want invalid_request", body, err)
			}
			return
		}
		if len(body) == 0 {
			return
		}
		var ref struct {
			OrderRef string `json:"order_ref"`
			Revive   bool   `json:"revive"`
		}
		if err := strictUnmarshal(body, &ref); err != nil || ref.OrderRef != got.OrderRef || ref.Revive != got.Revive {
			t.Fatalf("decodeConfirm accepted %q as %+v, encoding/json says %+v, %v", body, got, ref, err)
		}
	})
}

// strictUnmarshal is encoding/json with unknown fields and trailing data refused.
func strictUnmarshal(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailing
	}
	return nil
}

var errTrailing = &revguard.Error{Code: revguard.CodeInvalidRequest, Detail: "trailing data"}

// saneRequestIDChars are the characters of an X-Request-Id the server echoes.
const saneRequestIDChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:+/=@-"

// FuzzRequestID checks that an echoed X-Request-Id is only ever of the sane form.
func FuzzRequestID(f *testing.F) {
	for _, s := range []string{"", "abc", "req-1.2:3_4", "a b", "x\r\nSet-Cookie: 1", "ü", string(make([]byte, 129))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !validRequestID(id) {
			return
		}
		if !EchoableRequestID(id) {
			t.Fatalf("validRequestID accepted %q", id)
		}
	})
}

// FuzzDecodeRoom checks the waiting room decoder like FuzzDecodeSKU: refusals are
// invalid_request, what it accepts is valid and what encoding/json reads.
func FuzzDecodeRoom(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeRoom(body)
		if err != nil {
			if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("decodeRoom(%q): %v, want invalid_request", body, err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("decodeRoom(%q) accepted invalid settings %+v: %v", body, got, err)
		}
		var ref struct {
			PreQueueSeconds  *int64 `json:"pre_queue_seconds"`
			AdmitPerSecond   *int64 `json:"admit_per_second"`
			AdmissionSeconds *int64 `json:"admission_seconds"`
		}
		if err := strictUnmarshal(body, &ref); err != nil {
			t.Fatalf("decodeRoom accepted %q, encoding/json refuses it: %v", body, err)
		}
		if ref.AdmitPerSecond == nil || *ref.AdmitPerSecond != got.AdmitPerSecond ||
			ref.PreQueueSeconds != nil && *ref.PreQueueSeconds != got.PreQueueSeconds ||
			ref.AdmissionSeconds != nil && *ref.AdmissionSeconds != got.AdmissionSeconds {
			t.Fatalf("decodeRoom(%q) = %+v, encoding/json says %+v", body, got, ref)
		}
	})
}

// FuzzDecodeJoin checks the join decoder: refusals are invalid_request, and what it
// accepts encoding/json reads the same.
func FuzzDecodeJoin(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeJoin(body)
		if err != nil {
			if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
				t.Fatalf("decodeJoin(%q): %v, want invalid_request", body, err)
			}
			return
		}
		if len(body) == 0 {
			return
		}
		var ref struct {
			TurnstileToken *string `json:"turnstile_token"`
		}
		if err := strictUnmarshal(body, &ref); err != nil {
			t.Fatalf("decodeJoin accepted %q, encoding/json refuses it: %v", body, err)
		}
		if ref.TurnstileToken != nil && *ref.TurnstileToken != got.TurnstileToken {
			t.Fatalf("decodeJoin(%q) = %+v, encoding/json says %q", body, got, *ref.TurnstileToken)
		}
	})
}
