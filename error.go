package revguard

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code. Each API error code of docs/api.md has one
// constant; clients switch on it.
type Code string

// The error codes of the v1 API.
const (
	CodeInvalidRequest       Code = "invalid_request"
	CodeInvalidSKU           Code = "invalid_sku"
	CodeBodyTooLarge         Code = "body_too_large"
	CodeHeaderTooLarge       Code = "header_too_large" // the request line and header fields over the server's limit
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeNotFound             Code = "not_found" // no such route
	CodeUnauthenticated      Code = "unauthenticated"
	CodeForbidden            Code = "forbidden"
	CodeSKUNotFound          Code = "sku_not_found"
	CodeReservationNotFound  Code = "reservation_not_found"
	CodeWebhookNotFound      Code = "webhook_not_found"
	CodeSaleNotOpen          Code = "sale_not_open"
	CodeSoldOut              Code = "sold_out"
	CodeLimitExceeded        Code = "limit_exceeded"
	CodeStockBelowCommitted  Code = "stock_below_committed"
	CodeHoldExpired          Code = "hold_expired"
	CodeHoldReleased         Code = "hold_released"
	CodeAlreadyConfirmed     Code = "already_confirmed"
	CodeIdempotencyKeyReused Code = "idempotency_key_reused"
	CodeBotCheckFailed       Code = "bot_check_failed"
	CodeBotCheckUnavailable  Code = "bot_check_unavailable"
	CodeRateLimited          Code = "rate_limited"
	CodeUnavailable          Code = "unavailable"
	CodeAdmissionRequired    Code = "admission_required"     // a SKU with a waiting room, without a current admission
	CodeWaitingRoomNotFound  Code = "waiting_room_not_found" // the SKU has no waiting room (or it is off)
	CodePlaceNotFound        Code = "place_not_found"        // the customer has no place in the waiting room
	CodeInternal             Code = "internal"
)

// Codes lists every Code, so that tests can check that each one is mapped.
var Codes = []Code{
	CodeInvalidRequest, CodeInvalidSKU, CodeBodyTooLarge, CodeUnsupportedMediaType,
	CodeMethodNotAllowed, CodeNotFound, CodeUnauthenticated, CodeForbidden,
	CodeSKUNotFound, CodeReservationNotFound, CodeWebhookNotFound, CodeSaleNotOpen, CodeSoldOut,
	CodeLimitExceeded, CodeStockBelowCommitted, CodeHoldExpired, CodeHoldReleased,
	CodeAlreadyConfirmed, CodeIdempotencyKeyReused, CodeBotCheckFailed,
	CodeBotCheckUnavailable, CodeRateLimited, CodeUnavailable, CodeInternal,
	CodeAdmissionRequired, CodeWaitingRoomNotFound, CodePlaceNotFound,
	CodeHeaderTooLarge,
}

// Error is a domain error with a stable Code and a Detail safe to show to the client.
// Anything that is not an *Error is an internal failure whose text must never reach a
// client.
type Error struct {
	Code   Code
	Detail string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Detail == "" {
		return "revguard: " + string(e.Code)
	}
	return fmt.Sprintf("revguard: %s: %s", e.Code, e.Detail)
}

// Errorf returns an *Error with the given code and a formatted detail.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err: the Code of the first *Error in its chain, "" for
// nil, and CodeInternal for anything else.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return CodeInternal
}

// ErrorDetail returns the client-safe detail of err, or "" when err is not an *Error.
func ErrorDetail(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Detail
	}
	return ""
}
