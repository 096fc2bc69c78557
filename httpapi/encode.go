package httpapi

import (
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/revenueguard/revguard"
)

// The response bodies are small, flat and few, so they are written by hand into pooled
// buffers: the hot path allocates no encoder state and no reflection. The output is
// byte-for-byte what encoding/json would write for the same fields (a test checks this),
// including its escaping of <, >, &, U+2028 and U+2029.

// bufPool recycles response buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		*bp = (*bp)[:0]
		bufPool.Put(bp)
	}
}

// writeJSON sends body with status as application/json. The server adds the
// Content-Length itself (HTTPServer always; net/http for a body this small, written in
// one piece by a handler that then returns).
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(body)
}

// Shared header values; neither HTTPServer nor net/http modifies them.
var (
	jsonContentType    = []string{"application/json; charset=utf-8"}
	problemContentType = []string{"application/problem+json"}
	noSniff            = []string{"nosniff"}
)

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json escapes it; invalid
// UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendTime appends t as an RFC 3339 UTC string, or null for the zero time.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendNullableString appends s, or null when s is empty.
func appendNullableString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// AppendReservation appends r as the reservation object of docs/api.md, exactly as the API
// writes it: the one encoding of that object, also used by revguard export.
func AppendReservation(b []byte, r *revguard.Reservation) []byte { return appendReservation(b, r) }

// appendReservation appends the reservation object of docs/api.md.
func appendReservation(b []byte, r *revguard.Reservation) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"sku":`...)
	b = appendString(b, r.SKU)
	b = append(b, `,"customer_id":`...)
	b = appendString(b, r.CustomerID)
	b = append(b, `,"quantity":`...)
	b = strconv.AppendInt(b, r.Quantity, 10)
	b = append(b, `,"status":`...)
	b = appendString(b, string(r.Status))
	b = append(b, `,"created_at":`...)
	b = appendTime(b, r.CreatedAt)
	b = append(b, `,"expires_at":`...)
	b = appendTime(b, r.ExpiresAt)
	b = append(b, `,"confirmed_at":`...)
	b = appendTime(b, r.ConfirmedAt)
	b = append(b, `,"released_at":`...)
	b = appendTime(b, r.ReleasedAt)
	b = append(b, `,"order_ref":`...)
	b = appendNullableString(b, r.OrderRef)
	return append(b, '}')
}

// appendSKU appends the SKU object of docs/api.md.
func appendSKU(b []byte, s *revguard.SKU) []byte {
	b = append(b, `{"sku":`...)
	b = appendString(b, s.ID)
	b = append(b, `,"stock":`...)
	b = strconv.AppendInt(b, s.Stock, 10)
	b = append(b, `,"available":`...)
	b = strconv.AppendInt(b, s.Available, 10)
	b = append(b, `,"held":`...)
	b = strconv.AppendInt(b, s.Held, 10)
	b = append(b, `,"sold":`...)
	b = strconv.AppendInt(b, s.Sold, 10)
	b = append(b, `,"per_customer_limit":`...)
	b = strconv.AppendInt(b, s.PerCustomerLimit, 10)
	b = append(b, `,"hold_seconds":`...)
	b = strconv.AppendInt(b, s.HoldSeconds, 10)
	b = append(b, `,"opens_at":`...)
	b = appendTime(b, s.OpensAt)
	return append(b, '}')
}

// appendAvailability appends the public availability object of docs/api.md.
func appendAvailability(b []byte, a *revguard.Availability) []byte {
	b = append(b, `{"sku":`...)
	b = appendString(b, a.SKU)
	b = append(b, `,"available":`...)
	b = strconv.AppendInt(b, a.Available, 10)
	b = append(b, `,"sold_out":`...)
	b = strconv.AppendBool(b, a.SoldOut)
	b = append(b, `,"opens_at":`...)
	b = appendTime(b, a.OpensAt)
	return append(b, '}')
}

// appendOrderPage appends {"items": [...], "next_cursor": ...}.
func appendOrderPage(b []byte, p *revguard.OrderPage) []byte {
	b = append(b, `{"items":[`...)
	for i := range p.Items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendReservation(b, &p.Items[i])
	}
	b = append(b, `],"next_cursor":`...)
	b = appendNullableString(b, p.NextCursor)
	return append(b, '}')
}
