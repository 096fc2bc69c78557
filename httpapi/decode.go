package httpapi

import (
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/revenueguard/revguard"
)

// MaxBodyBytes is the largest request body the API reads (docs/api.md: 413 beyond it).
const MaxBodyBytes = 64 << 10

// bodyPool recycles request-body buffers. Decoded strings are copied out of the buffer,
// so it can go back to the pool as soon as decoding is done.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// withBody reads the request body of a JSON endpoint strictly and calls decode with it:
// more than MaxBodyBytes is 413 body_too_large; a non-empty body whose Content-Type is not
// application/json, or that has a Content-Encoding, is 415 unsupported_media_type. An empty body reaches decode as a nil
// slice: each decoder decides whether that is allowed. The slice is valid only during
// decode.
func withBody(r *http.Request, decode func(body []byte) error) error {
	if r.ContentLength > MaxBodyBytes {
		return tooLarge()
	}
	bp := bodyPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 2*MaxBodyBytes {
			bodyPool.Put(bp)
		}
	}()
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if len(b) > MaxBodyBytes {
			*bp = b
			return tooLarge()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = b
			return revguard.Errorf(revguard.CodeInvalidRequest, "could not read the request body")
		}
	}
	*bp = b
	if len(b) == 0 {
		return decode(nil)
	}
	if err := checkBodyHeaders(r); err != nil {
		return err
	}
	return decode(b)
}

// checkBodyHeaders checks the headers of a request with a body: a JSON Content-Type,
// no Content-Encoding.
func checkBodyHeaders(r *http.Request) error {
	if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	return checkContentEncoding(r.Header.Values("Content-Encoding"))
}

// utf8Charset reports whether a charset names UTF-8, its common alias, or US-ASCII
// (a subset: every ASCII body is UTF-8).
func utf8Charset(cs string) bool {
	return strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8") || strings.EqualFold(cs, "us-ascii")
}

// checkContentEncoding refuses a body in a content coding (RFC 9110 15.5.16: 415),
// which the API does not decode: read as it is, a compressed body would be taken for
// malformed JSON, or worse, a body labelled compressed but sent plain would be
// accepted. identity is no coding.
func checkContentEncoding(vals []string) error {
	for _, v := range vals {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return revguard.Errorf(revguard.CodeUnsupportedMediaType, "Content-Encoding %s is not supported: send the body uncompressed", quoteForDetail([]byte(c)))
			}
		}
	}
	return nil
}

// parseRFC3339 parses an RFC 3339 time, whose T and Z may be lower case (RFC 3339
// 5.6), which time.RFC3339 does not take.
func parseRFC3339(s string) (time.Time, error) {
	return time.Parse(time.RFC3339, strings.ToUpper(s)) // its only letters are T and Z
}

func tooLarge() error {
	return revguard.Errorf(revguard.CodeBodyTooLarge, "the request body is larger than %d bytes", MaxBodyBytes)
}

// checkJSONContentType accepts application/json with any parameters, except a charset
// that is not UTF-8 (utf8Charset; RFC 8259: JSON exchanged between systems is UTF-8).
func checkJSONContentType(ct string) error {
	switch ct {
	case "application/json", "application/json; charset=utf-8", "application/json;charset=utf-8":
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		if ct == "" {
			return revguard.Errorf(revguard.CodeUnsupportedMediaType, "a request body needs Content-Type: application/json")
		}
		return revguard.Errorf(revguard.CodeUnsupportedMediaType, "Content-Type must be application/json")
	}
	if cs, ok := params["charset"]; ok && !utf8Charset(cs) {
		return revguard.Errorf(revguard.CodeUnsupportedMediaType, "JSON bodies must be UTF-8")
	}
	return nil
}

// reserveRequest is the body of POST /v1/skus/{sku}/reservations; it may be empty.
type reserveRequest struct {
	Quantity       int64 // 1 when absent
	TurnstileToken string
}

var reserveFields = []string{"quantity", "turnstile_token"}

// decodeReserve decodes a reserve body. The quantity is checked against the largest
// possible per-customer limit here and against the SKU's own limit later.
func decodeReserve(body []byte) (reserveRequest, error) {
	req := reserveRequest{Quantity: 1}
	if len(body) == 0 {
		return req, nil
	}
	d := objectDecoder{data: body, fields: reserveFields}
	for f := d.next(); f >= 0; f = d.next() {
		if d.null() {
			continue
		}
		switch f {
		case 0:
			req.Quantity = d.int("quantity")
		case 1:
			req.TurnstileToken = d.str("turnstile_token")
		}
	}
	if d.err != nil {
		return req, d.err
	}
	if req.Quantity < 1 || req.Quantity > revguard.MaxPerCustomerLimit {
		return req, quantityError()
	}
	return req, nil
}

func quantityError() error {
	return revguard.Errorf(revguard.CodeInvalidRequest, "quantity must be between 1 and the SKU's per_customer_limit")
}

// confirmRequest is the optional body of POST /v1/reservations/{id}/confirm.
type confirmRequest struct {
	OrderRef string
	Revive   bool
}

var confirmFields = []string{"order_ref", "revive"}

func decodeConfirm(body []byte) (confirmRequest, error) {
	var req confirmRequest
	if len(body) == 0 {
		return req, nil
	}
	d := objectDecoder{data: body, fields: confirmFields}
	for f := d.next(); f >= 0; f = d.next() {
		if d.null() {
			continue
		}
		switch f {
		case 0:
			req.OrderRef = d.str("order_ref")
		case 1:
			req.Revive = d.bool("revive")
		}
	}
	if d.err != nil {
		return req, d.err
	}
	if !revguard.ValidOrderRef(req.OrderRef) {
		return req, revguard.Errorf(revguard.CodeInvalidRequest, "order_ref must be at most %d printable characters", revguard.MaxOrderRefLen)
	}
	return req, nil
}

// decodeEmpty accepts an empty body or an empty JSON object (POST .../release).
func decodeEmpty(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	d := objectDecoder{data: body}
	d.next()
	return d.err
}

var skuFields = []string{"stock", "per_customer_limit", "hold_seconds", "opens_at"}

// decodeSKU decodes the body of PUT /v1/skus/{sku} into a normalized, validated update.
// Omitted (or null) per_customer_limit and hold_seconds take their defaults; an explicit
// value out of range, including 0, is refused.
func decodeSKU(body []byte) (revguard.SKUUpdate, error) {
	var u revguard.SKUUpdate
	if len(body) == 0 {
		return u, revguard.Errorf(revguard.CodeInvalidRequest, "request body is empty; stock is required")
	}
	d := objectDecoder{data: body, fields: skuFields}
	var present [4]bool
	for f := d.next(); f >= 0; f = d.next() {
		if d.null() {
			continue
		}
		present[f] = true
		switch f {
		case 0:
			u.Stock = d.int("stock")
		case 1:
			u.PerCustomerLimit = d.int("per_customer_limit")
		case 2:
			u.HoldSeconds = d.int("hold_seconds")
		case 3:
			s := d.str("opens_at")
			if d.err != nil {
				break
			}
			t, err := parseRFC3339(s)
			if err != nil {
				return u, revguard.Errorf(revguard.CodeInvalidRequest, "opens_at must be an RFC 3339 time such as 2026-11-27T10:00:00Z")
			}
			if t.IsZero() { // year 1, which the update would read as no opening time
				return u, revguard.Errorf(revguard.CodeInvalidRequest, revguard.OpensAtRangeDetail)
			}
			u.OpensAt = t.UTC()
		}
	}
	if d.err != nil {
		return u, d.err
	}
	if !present[0] {
		return u, revguard.Errorf(revguard.CodeInvalidRequest, "stock is required")
	}
	if present[1] && u.PerCustomerLimit < 1 {
		u.PerCustomerLimit = -1 // make Validate refuse an explicit 0
	}
	if present[2] && u.HoldSeconds < 1 {
		u.HoldSeconds = -1
	}
	u.Normalize()
	if err := u.Validate(); err != nil {
		return revguard.SKUUpdate{}, err
	}
	return u, nil
}

// sessionRequest is the body of POST /v1/sessions.
type sessionRequest struct {
	CustomerID string
	TTL        time.Duration
}

var sessionFields = []string{"customer_id", "ttl_seconds"}

func decodeSession(body []byte) (sessionRequest, error) {
	req := sessionRequest{TTL: revguard.DefaultSessionTTL}
	if len(body) == 0 {
		return req, revguard.Errorf(revguard.CodeInvalidRequest, "request body is empty; customer_id is required")
	}
	d := objectDecoder{data: body, fields: sessionFields}
	var present [2]bool
	var ttl int64
	for f := d.next(); f >= 0; f = d.next() {
		if d.null() {
			continue
		}
		present[f] = true
		switch f {
		case 0:
			req.CustomerID = d.str("customer_id")
		case 1:
			ttl = d.int("ttl_seconds")
		}
	}
	if d.err != nil {
		return req, d.err
	}
	if !present[0] {
		return req, revguard.Errorf(revguard.CodeInvalidRequest, "customer_id is required")
	}
	if !revguard.ValidCustomerID(req.CustomerID) {
		return req, revguard.Errorf(revguard.CodeInvalidRequest, "customer_id must be 1 to %d printable characters", revguard.MaxCustomerIDLen)
	}
	if present[1] {
		minS, maxS := int64(revguard.MinSessionTTL/time.Second), int64(revguard.MaxSessionTTL/time.Second)
		if ttl < minS || ttl > maxS {
			return req, revguard.Errorf(revguard.CodeInvalidRequest, "ttl_seconds must be between %d and %d", minS, maxS)
		}
		req.TTL = time.Duration(ttl) * time.Second
	}
	return req, nil
}
