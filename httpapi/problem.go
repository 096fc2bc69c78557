package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/revenueguard/revguard"
)

// problemTypePrefix starts the RFC 9457 "type" URI of every problem: a URN names the
// problem kind stably without promising a page to dereference.
const problemTypePrefix = "urn:revguard:problem:"

// problemInfo is how one Code is answered.
type problemInfo struct {
	status int
	title  string
}

// problems is the only table that maps a revguard.Code to an HTTP status and a title. A
// test checks that it covers revguard.Codes.
var problems = map[revguard.Code]problemInfo{
	revguard.CodeInvalidRequest:       {http.StatusBadRequest, "Invalid request"},
	revguard.CodeInvalidSKU:           {http.StatusBadRequest, "Invalid SKU id"},
	revguard.CodeBodyTooLarge:         {http.StatusRequestEntityTooLarge, "Request body too large"},
	revguard.CodeHeaderTooLarge:       {http.StatusRequestHeaderFieldsTooLarge, "Request header too large"},
	revguard.CodeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type"},
	revguard.CodeMethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	revguard.CodeNotFound:             {http.StatusNotFound, "Not found"},
	revguard.CodeUnauthenticated:      {http.StatusUnauthorized, "Unauthenticated"},
	revguard.CodeForbidden:            {http.StatusForbidden, "Forbidden"},
	revguard.CodeSKUNotFound:          {http.StatusNotFound, "SKU not found"},
	revguard.CodeReservationNotFound:  {http.StatusNotFound, "Reservation not found"},
	revguard.CodeWebhookNotFound:      {http.StatusNotFound, "Webhook not found"},
	revguard.CodeSaleNotOpen:          {http.StatusConflict, "Sale not open"},
	revguard.CodeSoldOut:              {http.StatusConflict, "Sold out"},
	revguard.CodeLimitExceeded:        {http.StatusConflict, "Per-customer limit exceeded"},
	revguard.CodeStockBelowCommitted:  {http.StatusConflict, "Stock below committed units"},
	revguard.CodeHoldExpired:          {http.StatusConflict, "Hold expired"},
	revguard.CodeHoldReleased:         {http.StatusConflict, "Hold released"},
	revguard.CodeAlreadyConfirmed:     {http.StatusConflict, "Already confirmed"},
	revguard.CodeIdempotencyKeyReused: {http.StatusUnprocessableEntity, "Idempotency key reused"},
	revguard.CodeBotCheckFailed:       {http.StatusForbidden, "Bot check failed"},
	revguard.CodeBotCheckUnavailable:  {http.StatusServiceUnavailable, "Bot check unavailable"},
	revguard.CodeRateLimited:          {http.StatusTooManyRequests, "Too many requests"},
	revguard.CodeUnavailable:          {http.StatusServiceUnavailable, "Service unavailable"},
	revguard.CodeInternal:             {http.StatusInternalServerError, "Internal server error"},
	revguard.CodeAdmissionRequired:    {http.StatusConflict, "Admission required"},
	revguard.CodeWaitingRoomNotFound:  {http.StatusNotFound, "Waiting room not found"},
	revguard.CodePlaceNotFound:        {http.StatusNotFound, "Place not found"},
}

// writeError answers err as a problem document. A *revguard.Error is answered with its
// code and detail. A context error means the deadline passed or the client left: 503
// unavailable. Anything else is an internal failure: it is logged with the request id,
// and the client sees only "internal" and that id, never the error text.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := revguard.ErrorCode(err)
	detail := revguard.ErrorDetail(err)
	if _, ok := problems[code]; !ok {
		s.Logger.LogAttrs(r.Context(), slog.LevelError, "httpapi: error code missing from the problem table",
			slog.String("code", string(code)), slog.String("request_id", revguard.RequestIDFromContext(r.Context())))
		code = revguard.CodeInternal
	}
	if code == revguard.CodeInternal {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			s.Logger.LogAttrs(r.Context(), slog.LevelDebug, "httpapi: request cancelled",
				slog.String("request_id", revguard.RequestIDFromContext(r.Context())), slog.Any("error", err))
			s.writeProblem(w, r, revguard.CodeUnavailable, "the request was cancelled or timed out")
			return
		}
		s.Logger.LogAttrs(r.Context(), slog.LevelError, "httpapi: internal error",
			slog.String("request_id", revguard.RequestIDFromContext(r.Context())),
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
		detail = ""
	}
	s.writeProblem(w, r, code, detail)
}

// writeProblemOutside answers through w, outside the middleware (an unreadable
// request, a stream refused at shutdown), with the problem of code under the request
// id given (one of the server's own when ""), and returns that id.
func (s *Server) writeProblemOutside(w http.ResponseWriter, id string, code revguard.Code, detail string) string {
	if id == "" {
		id = s.newRequestID()
	}
	setIDHeaders(w.Header(), id)
	markIPCounted(w) // no request to count: its connection is closed after the answer
	s.writeProblem(w, (&http.Request{}).WithContext(revguard.WithRequestID(context.Background(), id)), code, detail)
	return id
}

// retryAfterOne is the Retry-After of a 503.
var retryAfterOne = []string{"1"}

// acceptIdentity is the Accept-Encoding of a 415: bodies are read uncompressed.
var acceptIdentity = []string{"identity"}

// appendProblem appends the RFC 9457 document of code (one of the problem table's) with
// detail (the title when empty), and a 500's request id, to b.
func appendProblem(b []byte, code revguard.Code, detail, requestID string) []byte {
	info := problems[code]
	if detail == "" {
		detail = info.title
	}
	b = append(b, `{"type":"`+problemTypePrefix...)
	b = append(b, code...)
	b = append(b, `","title":`...)
	b = appendString(b, info.title)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(info.status), 10)
	b = append(b, `,"detail":`...)
	b = appendString(b, detail)
	b = append(b, `,"code":"`...)
	b = append(b, code...)
	b = append(b, '"')
	if code == revguard.CodeInternal {
		b = append(b, `,"request_id":`...)
		b = appendString(b, requestID)
	}
	return append(b, "}\n"...)
}

// writeProblem writes the RFC 9457 document of code with detail (the title when empty).
// A 500 carries the request id, which the server log also has. A 401 carries the
// WWW-Authenticate challenge unless the handler already set a more precise one; a 503
// carries Retry-After; a 415, Accept-Encoding. A refusal for the request's shape draws
// on the client address's bucket first, and is a 429 when it is empty (limitShape).
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, code revguard.Code, detail string) {
	switch code {
	case revguard.CodeInvalidRequest, revguard.CodeInvalidSKU, revguard.CodeUnsupportedMediaType:
		if s.limitShape(w, r) {
			return
		}
	}
	info, ok := problems[code]
	if !ok {
		code, info = revguard.CodeInternal, problems[revguard.CodeInternal]
	}
	requestID := "" // a 500's only
	if code == revguard.CodeInternal {
		requestID = revguard.RequestIDFromContext(r.Context())
	}
	bp := getBuf()
	b := appendProblem((*bp)[:0], code, detail, requestID)
	h := w.Header()
	if code == revguard.CodeUnauthenticated && h.Get("WWW-Authenticate") == "" {
		h["Www-Authenticate"] = challengeBare
	}
	if code == revguard.CodeUnsupportedMediaType {
		// RFC 9110 12.5.3: which content codings a body may have (none).
		h["Accept-Encoding"] = acceptIdentity
	}
	if info.status == http.StatusServiceUnavailable && h["Retry-After"] == nil {
		// RFC 9110 10.2.3: how long to wait before retrying a transient failure (the
		// verifier or a store being unreachable); a 429 sets its own.
		h["Retry-After"] = retryAfterOne
	}
	h["Content-Type"] = problemContentType
	w.WriteHeader(info.status)
	w.Write(b)
	*bp = b
	putBuf(bp)
}
