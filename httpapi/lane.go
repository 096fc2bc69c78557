package httpapi

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/revenueguard/revguard"
)

// reservePattern is the route of the hot path.
const reservePattern = "POST /v1/skus/{sku}/reservations"

// serveReserve is HTTPServer's reserve lane: it answers the hot path, POST
// /v1/skus/{sku}/reservations, from fasthttp's parsed request, without converting it
// into an *http.Request, routing it and answering through a header map. It runs the
// same functions as handleReserve and the middleware (identify, decodeReserve,
// reserveFor, writeError), so that the answers are the same; TestReserveLane compares
// them with the general path's.
//
// It reports false, having changed nothing and written nothing, for a request the
// general path is to answer: anything but the plain form of the API's own clients
// (HTTP/1.1, a plain path, one bearer token, an empty body or a JSON one with its
// length); a request whose Idempotency-Key or body the general path refuses (it
// checks them again, and answers); and every request while the log takes debug lines
// (the middleware writes the access line). From the session lookup on, it answers
// itself: a refused token too, so that no lookup is made twice.
func (t *HTTPServer) serveReserve(ctx *fasthttp.RequestCtx, w *syncWriter) (served bool) {
	start := time.Now()
	s := t.api
	h := &ctx.Request.Header
	// A chunked body (length -1) goes the general path, with its trailer.
	if !h.IsPost() || string(h.Protocol()) != "HTTP/1.1" || h.ContentLength() < 0 {
		return false
	}
	sku, ok := reserveTarget(ctx.RequestURI())
	if !ok || s.Logger.Enabled(t.cfg.BaseContext, slog.LevelDebug) {
		return false
	}
	// The request id first, as the middleware: even a panic is answered under it.
	var id string
	if v := h.Peek("X-Request-Id"); len(v) > 0 {
		if v := string(v); validRequestID(v) {
			id = v
		}
	}
	if id == "" {
		id = s.newRequestID()
	}
	rctx := revguard.WithRequestID(t.cfg.BaseContext, id)
	defer func() {
		// As serve and the middleware do: ErrAbortHandler drops the connection
		// without an answer; any other panic is logged and answered with a 500.
		if v := recover(); v != nil {
			served = true
			if v == http.ErrAbortHandler {
				ctx.HijackSetNoResponse(true)
				ctx.Hijack(func(net.Conn) {})
				return
			}
			w.ctx = ctx
			s.finishRequest(w, laneRequest(ctx, w, rctx, id), id, start, v)
		}
	}()
	// An empty body is {} (withBody); another needs one of the JSON types that
	// checkJSONContentType takes at once, and no Content-Encoding (withBody refuses it).
	raw := ctx.PostBody()
	if len(raw) > 0 && (!jsonContentTypes[string(h.ContentType())] || h.ContentEncoding() != nil) {
		return false
	}
	auth := h.PeekAll("Authorization")
	if len(auth) != 1 {
		return false
	}
	token, ok := parseBearer(string(auth[0]))
	if !ok {
		return false
	}
	var key string
	switch keys := h.PeekAll("Idempotency-Key"); len(keys) {
	case 0:
	case 1:
		if key = string(keys[0]); !revguard.ValidIdempotencyKey(key) {
			return false
		}
	default:
		return false
	}
	body, err := decodeReserve(raw) // the strings it keeps are copies
	if err != nil {
		return false
	}

	// Answered here from now on: the session lookup is not made twice.
	w.ctx = ctx
	remote := ""
	if lc, ok := ctx.Conn().(*lingerConn); ok {
		remote = lc.addr
	} else {
		remote = ctx.RemoteAddr().String()
	}
	var hops []string
	if len(s.TrustedProxies) > 0 {
		for _, v := range h.PeekAll("X-Forwarded-For") {
			hops = append(hops, string(v))
		}
	}
	ip := s.clientIPOf(remote, hops)
	c, err := s.identify(rctx, token)
	if err != nil || c.admin {
		r := laneRequest(ctx, w, rctx, id)
		if err != nil {
			s.writeIdentifyError(w, r, err, ip)
		} else {
			s.refuseAdmin(w, r)
		}
		s.metrics.observeRequest(reservePattern, w.status, time.Since(start))
		return true
	}
	var turnstile string
	if v := h.Peek("Cf-Turnstile-Response"); len(v) > 0 {
		turnstile = string(v)
	}
	out := s.reserveFor(rctx, w, c.customerID, sku, body, key, turnstile, ip)
	if out.err != nil {
		s.writeError(w, laneRequest(ctx, w, rctx, id), out.err)
	} else {
		writeReserved(ctx, w, id, &out)
	}
	s.metrics.observeRequest(reservePattern, w.status, time.Since(start))
	return true
}

// laneRequest is the lane's request for the functions that take one (the problem
// documents, the panic's log line): its method, path, route and context, which is all
// they read. It sets the id's headers as the middleware does.
func laneRequest(ctx *fasthttp.RequestCtx, w *syncWriter, rctx context.Context, id string) *http.Request {
	setIDHeaders(w.header, id)
	w.conv.url = url.URL{Path: string(ctx.RequestURI())} // a plain path (reserveTarget)
	r := http.Request{Method: http.MethodPost, URL: &w.conv.url, Pattern: reservePattern, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	return r.WithContext(rctx)
}

// writeReserved writes the 201 of a reservation into fasthttp's response: the headers
// and body handleReserve's answer has.
func writeReserved(ctx *fasthttp.RequestCtx, w *syncWriter, id string, out *reserveOutcome) {
	rh := &ctx.Response.Header
	setDate(rh)
	ctx.SetStatusCode(http.StatusCreated)
	rh.SetContentType(jsonContentType[0])
	rh.SetCanonical(headerRequestID, []byte(id))
	rh.SetCanonical(headerNoSniff, []byte(noSniff[0]))
	if out.replayed {
		rh.SetCanonical(headerReplayed, []byte(replayedTrue[0]))
	}
	bp := getBuf()
	b := append((*bp)[:0], "/v1/reservations/"...)
	rh.SetCanonical(headerLocation, append(b, out.res.ID...))
	b = append(appendReservation(b[:0], &out.res), '\n')
	ctx.Response.SetBody(b) // a copy
	*bp = b
	putBuf(bp)
	w.status, w.body = http.StatusCreated, len(b)
}

var (
	headerRequestID = []byte("X-Request-Id")
	headerNoSniff   = []byte("X-Content-Type-Options")
	headerReplayed  = []byte("Idempotent-Replayed")
	headerLocation  = []byte("Location")
)

// jsonContentTypes are the Content-Types of a JSON body the lane takes: those
// checkJSONContentType accepts at once (the others go the general path).
var jsonContentTypes = map[string]bool{"application/json": true, "application/json; charset=utf-8": true, "application/json;charset=utf-8": true}

// reserveTarget returns the SKU id of a request target of the form
// /v1/skus/{sku}/reservations with a valid SKU id, and no query (nor a dot segment,
// which the general path answers: 400 invalid_sku).
func reserveTarget(uri []byte) (string, bool) {
	const prefix, suffix = "/v1/skus/", "/reservations"
	if len(uri) <= len(prefix)+len(suffix) || string(uri[:len(prefix)]) != prefix || string(uri[len(uri)-len(suffix):]) != suffix {
		return "", false
	}
	sku := string(uri[len(prefix) : len(uri)-len(suffix)])
	if !revguard.ValidSKUID(sku) {
		return "", false
	}
	return sku, true
}
