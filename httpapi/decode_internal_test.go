package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/revenueguard/revguard"
)

func TestDecodeReserve(t *testing.T) {
	tests := []struct {
		name string
		body string
		want reserveRequest
		code revguard.Code // "" for success
		msg  string        // a substring of the detail
	}{
		{"Empty", ``, reserveRequest{Quantity: 1}, "", ""},
		{"EmptyObject", `{}`, reserveRequest{Quantity: 1}, "", ""},
		{"Quantity", `{"quantity": 3}`, reserveRequest{Quantity: 3}, "", ""},
		{"Token", `{"turnstile_token":"abc"}`, reserveRequest{Quantity: 1, TurnstileToken: "abc"}, "", ""},
		{"Both", " \t\r\n{ \"quantity\" : 2 , \"turnstile_token\" : \"x\\u00e9\\n\" } \n", reserveRequest{Quantity: 2, TurnstileToken: "xé\n"}, "", ""},
		{"NullIsAbsent", `{"quantity":null,"turnstile_token":null}`, reserveRequest{Quantity: 1}, "", ""},
		{"SurrogatePair", `{"turnstile_token":"\ud83d\ude00"}`, reserveRequest{Quantity: 1, TurnstileToken: "😀"}, "", ""},
		{"EscapedKey", `{"quan\u0074ity":4}`, reserveRequest{Quantity: 4}, "", ""},

		{"ErrZero", `{"quantity":0}`, reserveRequest{}, revguard.CodeInvalidRequest, "quantity must be between 1"},
		{"ErrNegative", `{"quantity":-1}`, reserveRequest{}, revguard.CodeInvalidRequest, "quantity must be between 1"},
		{"ErrTooLarge", `{"quantity":1000001}`, reserveRequest{}, revguard.CodeInvalidRequest, "quantity must be between 1"},
		{"ErrOverflow", `{"quantity":99999999999999999999}`, reserveRequest{}, revguard.CodeInvalidRequest, "out of range"},
		{"ErrFraction", `{"quantity":1.5}`, reserveRequest{}, revguard.CodeInvalidRequest, "must be an integer"},
		{"ErrExponent", `{"quantity":1e2}`, reserveRequest{}, revguard.CodeInvalidRequest, "must be an integer"},
		{"ErrString", `{"quantity":"1"}`, reserveRequest{}, revguard.CodeInvalidRequest, "quantity must be an integer, not a string"},
		{"ErrObject", `{"quantity":{}}`, reserveRequest{}, revguard.CodeInvalidRequest, "not an object"},
		{"ErrArray", `{"turnstile_token":[]}`, reserveRequest{}, revguard.CodeInvalidRequest, "turnstile_token must be a string, not an array"},
		{"ErrBool", `{"quantity":true}`, reserveRequest{}, revguard.CodeInvalidRequest, "not a boolean"},
		{"ErrUnknownField", `{"quantity":1,"qty":2}`, reserveRequest{}, revguard.CodeInvalidRequest, `unknown field "qty"`},
		{"ErrCaseMismatch", `{"Quantity":1}`, reserveRequest{}, revguard.CodeInvalidRequest, `unknown field "Quantity"`},
		{"ErrDuplicate", `{"quantity":1,"quantity":2}`, reserveRequest{}, revguard.CodeInvalidRequest, `duplicate field "quantity"`},
		{"ErrDuplicateEscaped", `{"quantity":1,"quan\u0074ity":2}`, reserveRequest{}, revguard.CodeInvalidRequest, "duplicate field"},
		{"ErrDuplicateNull", `{"quantity":null,"quantity":2}`, reserveRequest{}, revguard.CodeInvalidRequest, "duplicate field"},
		{"ErrTrailing", `{"quantity":1} x`, reserveRequest{}, revguard.CodeInvalidRequest, "unexpected data after"},
		{"ErrSecondObject", `{}{}`, reserveRequest{}, revguard.CodeInvalidRequest, "unexpected data after"},
		{"ErrNotObject", `[1]`, reserveRequest{}, revguard.CodeInvalidRequest, "must be a JSON object"},
		{"ErrNull", `null`, reserveRequest{}, revguard.CodeInvalidRequest, "must be a JSON object"},
		{"ErrWhitespaceOnly", ` `, reserveRequest{}, revguard.CodeInvalidRequest, "empty"},
		{"ErrTruncated", `{"quantity":1`, reserveRequest{}, revguard.CodeInvalidRequest, "invalid JSON"},
		{"ErrTrailingComma", `{"quantity":1,}`, reserveRequest{}, revguard.CodeInvalidRequest, "expected a string key"},
		{"ErrLeadingZero", `{"quantity":01}`, reserveRequest{}, revguard.CodeInvalidRequest, "invalid JSON"},
		{"ErrBadLiteral", `{"quantity":nul}`, reserveRequest{}, revguard.CodeInvalidRequest, "must be an integer"},
		{"ErrSingleQuotes", `{'quantity':1}`, reserveRequest{}, revguard.CodeInvalidRequest, "expected a string key"},
		{"ErrControlChar", "{\"turnstile_token\":\"a\x01\"}", reserveRequest{}, revguard.CodeInvalidRequest, "control character"},
		{"ErrBadEscape", `{"turnstile_token":"\x"}`, reserveRequest{}, revguard.CodeInvalidRequest, "invalid escape"},
		{"ErrLoneSurrogate", `{"turnstile_token":"\ud83d"}`, reserveRequest{}, revguard.CodeInvalidRequest, "surrogate"},
		{"ErrInvalidUTF8", "{\"turnstile_token\":\"\xff\"}", reserveRequest{}, revguard.CodeInvalidRequest, "UTF-8"},
		{"ErrBOM", "\xef\xbb\xbf{}", reserveRequest{}, revguard.CodeInvalidRequest, "must be a JSON object"},
		{"ErrUnterminated", `{"turnstile_token":"abc`, reserveRequest{}, revguard.CodeInvalidRequest, "unterminated string"},
		{"ErrMissingColon", `{"quantity" 1}`, reserveRequest{}, revguard.CodeInvalidRequest, "expected ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeReserve([]byte(tt.body))
			checkDecode(t, tt.body, err, tt.code, tt.msg)
			if tt.code == "" && got != tt.want {
				t.Errorf("decodeReserve(%q) = %+v, want %+v", tt.body, got, tt.want)
			}
		})
	}
}

// checkDecode checks that err has code (nil when code is "") and a detail containing msg.
func checkDecode(t *testing.T, body string, err error, code revguard.Code, msg string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("decode(%q): unexpected error %v", body, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("decode(%q): no error, want %s", body, code)
	}
	if got := revguard.ErrorCode(err); got != code {
		t.Fatalf("decode(%q): code %s, want %s (%v)", body, got, code, err)
	}
	if d := revguard.ErrorDetail(err); !strings.Contains(d, msg) {
		t.Fatalf("decode(%q): detail %q, want it to contain %q", body, d, msg)
	}
}

func TestDecodeSKU(t *testing.T) {
	opens := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		body string
		want revguard.SKUUpdate
		code revguard.Code
		msg  string
	}{
		{"Defaults", `{"stock":100}`, revguard.SKUUpdate{Stock: 100, PerCustomerLimit: 1, HoldSeconds: 600}, "", ""},
		{"All", `{"stock":5,"per_customer_limit":2,"hold_seconds":1,"opens_at":"2026-11-27T10:00:00Z"}`,
			revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 2, HoldSeconds: 1, OpensAt: opens}, "", ""},
		{"OffsetIsUTC", `{"stock":5,"opens_at":"2026-11-27T11:00:00+01:00"}`,
			revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: opens}, "", ""},
		{"LowerCaseTZ", `{"stock":5,"opens_at":"2026-11-27t10:00:00.5z"}`,
			revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: time.Date(2026, 11, 27, 10, 0, 0, 5e8, time.UTC)}, "", ""},
		{"NullOpensAt", `{"stock":0,"opens_at":null}`, revguard.SKUUpdate{PerCustomerLimit: 1, HoldSeconds: 600}, "", ""},
		{"Max", `{"stock":1000000000,"per_customer_limit":1000000,"hold_seconds":86400}`,
			revguard.SKUUpdate{Stock: 1e9, PerCustomerLimit: 1e6, HoldSeconds: 86400}, "", ""},

		{"ErrEmpty", ``, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "stock is required"},
		{"ErrNoStock", `{"hold_seconds":5}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "stock is required"},
		{"ErrNullStock", `{"stock":null}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "stock is required"},
		{"ErrNegativeStock", `{"stock":-1}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "stock must be between"},
		{"ErrHugeStock", `{"stock":1000000001}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "stock must be between"},
		{"ErrZeroLimit", `{"stock":1,"per_customer_limit":0}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "per_customer_limit must be between"},
		{"ErrZeroHold", `{"stock":1,"hold_seconds":0}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "hold_seconds must be between"},
		{"ErrLongHold", `{"stock":1,"hold_seconds":86401}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "hold_seconds must be between"},
		{"ErrBadTime", `{"stock":1,"opens_at":"tomorrow"}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "RFC 3339"},
		{"ErrZeroTime", `{"stock":1,"opens_at":"0001-01-01T00:00:00Z"}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "out of range"},
		{"ErrTimeNumber", `{"stock":1,"opens_at":17}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "opens_at must be a string"},
		{"ErrUnknown", `{"stock":1,"price":3}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, `unknown field "price"`},
		{"ErrDuplicate", `{"stock":1,"stock":2}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "duplicate field"},
		{"ErrStockString", `{"stock":"1"}`, revguard.SKUUpdate{}, revguard.CodeInvalidRequest, "stock must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeSKU([]byte(tt.body))
			checkDecode(t, tt.body, err, tt.code, tt.msg)
			if tt.code == "" && got != tt.want {
				t.Errorf("decodeSKU(%q) = %+v, want %+v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeSession(t *testing.T) {
	tests := []struct {
		name string
		body string
		want sessionRequest
		code revguard.Code
		msg  string
	}{
		{"Default", `{"customer_id":"c-42"}`, sessionRequest{"c-42", time.Hour}, "", ""},
		{"TTL", `{"customer_id":"c 42 ü","ttl_seconds":60}`, sessionRequest{"c 42 ü", time.Minute}, "", ""},
		{"MaxTTL", `{"customer_id":"c","ttl_seconds":604800}`, sessionRequest{"c", 7 * 24 * time.Hour}, "", ""},
		{"ErrEmpty", ``, sessionRequest{}, revguard.CodeInvalidRequest, "customer_id is required"},
		{"ErrNoCustomer", `{"ttl_seconds":60}`, sessionRequest{}, revguard.CodeInvalidRequest, "customer_id is required"},
		{"ErrEmptyCustomer", `{"customer_id":""}`, sessionRequest{}, revguard.CodeInvalidRequest, "customer_id must be"},
		{"ErrControlCustomer", `{"customer_id":"a\u0000b"}`, sessionRequest{}, revguard.CodeInvalidRequest, "customer_id must be"},
		{"ErrLongCustomer", `{"customer_id":"` + strings.Repeat("é", 129) + `"}`, sessionRequest{}, revguard.CodeInvalidRequest, "customer_id must be"},
		{"ErrShortTTL", `{"customer_id":"c","ttl_seconds":59}`, sessionRequest{}, revguard.CodeInvalidRequest, "ttl_seconds must be between 60 and 604800"},
		{"ErrLongTTL", `{"customer_id":"c","ttl_seconds":604801}`, sessionRequest{}, revguard.CodeInvalidRequest, "ttl_seconds"},
		{"ErrCustomerNumber", `{"customer_id":42}`, sessionRequest{}, revguard.CodeInvalidRequest, "customer_id must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeSession([]byte(tt.body))
			checkDecode(t, tt.body, err, tt.code, tt.msg)
			if tt.code == "" && got != tt.want {
				t.Errorf("decodeSession(%q) = %+v, want %+v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeConfirmAndEmpty(t *testing.T) {
	tests := []struct {
		name string
		body string
		want confirmRequest
		code revguard.Code
		msg  string
	}{
		{"Empty", ``, confirmRequest{}, "", ""},
		{"Revive", `{"revive":true}`, confirmRequest{Revive: true}, "", ""},
		{"Both", `{"order_ref":"merchant-order-123","revive":false}`, confirmRequest{OrderRef: "merchant-order-123"}, "", ""},
		{"ErrReviveString", `{"revive":"yes"}`, confirmRequest{}, revguard.CodeInvalidRequest, "revive must be a boolean"},
		{"ErrBadLiteral", `{"revive":tru}`, confirmRequest{}, revguard.CodeInvalidRequest, "invalid literal"},
		{"ErrLongRef", `{"order_ref":"` + strings.Repeat("x", 129) + `"}`, confirmRequest{}, revguard.CodeInvalidRequest, "order_ref must be at most 128"},
		{"ErrUnknown", `{"orderRef":"x"}`, confirmRequest{}, revguard.CodeInvalidRequest, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeConfirm([]byte(tt.body))
			checkDecode(t, tt.body, err, tt.code, tt.msg)
			if tt.code == "" && got != tt.want {
				t.Errorf("decodeConfirm(%q) = %+v, want %+v", tt.body, got, tt.want)
			}
		})
	}
	for _, body := range []string{``, `{}`, ` { } `} {
		if err := decodeEmpty([]byte(body)); err != nil {
			t.Errorf("decodeEmpty(%q) = %v, want nil", body, err)
		}
	}
	for _, body := range []string{`{"a":1}`, `[]`, `{} {}`, `null`} {
		if err := decodeEmpty([]byte(body)); revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
			t.Errorf("decodeEmpty(%q) = %v, want invalid_request", body, err)
		}
	}
}

func TestWithBody(t *testing.T) {
	tests := []struct {
		name   string
		ct     string
		body   string
		length int64 // Content-Length; -1 for unknown (chunked)
		code   revguard.Code
		got    string // what decode saw
		ce     string // Content-Encoding
	}{
		{"JSON", "application/json", `{}`, 2, "", `{}`, ""},
		{"Charset", "application/json; charset=UTF-8", `{}`, 2, "", `{}`, ""},
		{"OtherParam", "application/json; foo=bar", `{}`, 2, "", `{}`, ""},
		{"UpperCase", "Application/JSON", `{}`, 2, "", `{}`, ""},
		{"Chunked", "application/json", `{"a":1}`, -1, "", `{"a":1}`, ""},
		{"EmptyNoType", "", ``, 0, "", ``, ""},
		{"EmptyOtherType", "text/plain", ``, 0, "", ``, ""},
		{"ErrNoType", "", `{}`, 2, revguard.CodeUnsupportedMediaType, "", ""},
		{"ErrText", "text/plain", `{}`, 2, revguard.CodeUnsupportedMediaType, "", ""},
		{"ErrForm", "application/x-www-form-urlencoded", `a=1`, 3, revguard.CodeUnsupportedMediaType, "", ""},
		{"ErrLatin1", "application/json; charset=latin1", `{}`, 2, revguard.CodeUnsupportedMediaType, "", ""},
		{"ErrUTF16", "application/json; charset=utf-16", `{}`, 2, revguard.CodeUnsupportedMediaType, "", ""},
		{"CharsetAlias", "application/json; charset=UTF8", `{}`, 2, "", `{}`, ""},
		{"CharsetASCII", "application/json; charset=us-ascii", `{}`, 2, "", `{}`, ""},
		{"ErrJSONSuffix", "application/problem+json", `{}`, 2, revguard.CodeUnsupportedMediaType, "", ""},
		{"ErrMalformedType", "application/json; charset", `{}`, 2, revguard.CodeUnsupportedMediaType, "", ""},
		{"ErrGzip", "application/json", `{}`, 2, revguard.CodeUnsupportedMediaType, "", "gzip"},
		{"ErrIdentityThenGzip", "application/json", `{}`, 2, revguard.CodeUnsupportedMediaType, "", "identity, gzip"},
		{"Identity", "application/json", `{}`, 2, "", `{}`, "Identity"},
		{"EmptyGzip", "application/json", ``, 0, "", ``, "gzip"},
		{"ErrTooLargeDeclared", "application/json", `{}`, MaxBodyBytes + 1, revguard.CodeBodyTooLarge, "", ""},
		{"ErrTooLargeChunked", "application/json", strings.Repeat(" ", MaxBodyBytes+1), -1, revguard.CodeBodyTooLarge, "", ""},
		{"ExactlyMax", "application/json", "{}" + strings.Repeat(" ", MaxBodyBytes-2), -1, "", "{}" + strings.Repeat(" ", MaxBodyBytes-2), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			r.ContentLength = tt.length
			if tt.ct != "" {
				r.Header.Set("Content-Type", tt.ct)
			}
			if tt.ce != "" {
				r.Header.Set("Content-Encoding", tt.ce)
			}
			var saw []byte
			called := false
			err := withBody(r, func(b []byte) error {
				called = true
				saw = bytes.Clone(b)
				return nil
			})
			if tt.code != "" {
				if revguard.ErrorCode(err) != tt.code || called {
					t.Fatalf("withBody: err %v (decode called %v), want %s and no decode", err, called, tt.code)
				}
				return
			}
			if err != nil || string(saw) != tt.got {
				t.Fatalf("withBody: err %v, decode saw %q, want %q", err, saw, tt.got)
			}
		})
	}

	t.Run("ErrReadFailure", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, "/", iotest.ErrReader(bytes.ErrTooLarge))
		r.Header.Set("Content-Type", "application/json")
		err := withBody(r, func([]byte) error { t.Fatal("decode called"); return nil })
		if revguard.ErrorCode(err) != revguard.CodeInvalidRequest {
			t.Fatalf("withBody with a failing body: %v, want invalid_request", err)
		}
	})
}

// TestEncodeMatchesEncodingJSON checks that the hand-written encoders write what
// encoding/json writes for the same fields, escaping included.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	strs := []string{"", "plain", `quote " back \ slash`, "ctl \x00\x01\x1f\n\r\t\b\f", "<script>&</script>",
		"line\u2028para\u2029", "ünïcödé 😀", "bad \xff utf8 \xc3", "\x7f del"}
	for _, s := range strs {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
	created := time.Date(2026, 11, 27, 10, 0, 0, 123000000, time.FixedZone("x", 3600))
	res := revguard.Reservation{ID: "01J0", SKU: "sku-1", CustomerID: "c<1>", Quantity: 2, Status: revguard.StatusConfirmed,
		CreatedAt: created, ExpiresAt: created.Add(time.Minute), ConfirmedAt: created.Add(time.Second), OrderRef: "o&1"}
	type wireRes struct {
		ID          string     `json:"id"`
		SKU         string     `json:"sku"`
		CustomerID  string     `json:"customer_id"`
		Quantity    int64      `json:"quantity"`
		Status      string     `json:"status"`
		CreatedAt   time.Time  `json:"created_at"`
		ExpiresAt   time.Time  `json:"expires_at"`
		ConfirmedAt *time.Time `json:"confirmed_at"`
		ReleasedAt  *time.Time `json:"released_at"`
		OrderRef    *string    `json:"order_ref"`
	}
	ca := res.ConfirmedAt.UTC()
	want, _ := json.Marshal(wireRes{res.ID, res.SKU, res.CustomerID, res.Quantity, string(res.Status),
		res.CreatedAt.UTC(), res.ExpiresAt.UTC(), &ca, nil, &res.OrderRef})
	if got := appendReservation(nil, &res); string(got) != string(want) {
		t.Errorf("appendReservation:\n got %s\nwant %s", got, want)
	}
	page := revguard.OrderPage{}
	if got := appendOrderPage(nil, &page); string(got) != `{"items":[],"next_cursor":null}` {
		t.Errorf("empty page: %s", got)
	}
}
