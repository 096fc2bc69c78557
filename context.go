package revguard

import "context"

type ctxKey int

const (
	customerKey ctxKey = iota
	requestIDKey
)

// WithCustomerID returns a context carrying the authenticated customer's id.
func WithCustomerID(ctx context.Context, customerID string) context.Context {
	return context.WithValue(ctx, customerKey, customerID)
}

// CustomerIDFromContext returns the authenticated customer's id, or "".
func CustomerIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(customerKey).(string)
	return id
}

// WithRequestID returns a context carrying the request's id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestIDFromContext returns the request's id, or "".
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}
