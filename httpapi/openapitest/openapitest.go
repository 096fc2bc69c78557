// Package openapitest checks HTTP traffic against the OpenAPI document of the API
// (httpapi.OpenAPI), for the end-to-end tests: a Transport validates every answer that
// passes through it, and every request the server accepted, with kin-openapi's
// validator, and turns a mismatch into an error of the round trip, which fails the
// test that sent the request.
//
// A request is matched to an operation the way the server routes it: by an
// http.ServeMux built from the document's paths. An answer to a request that no
// operation serves (404 not_found, 405 method_not_allowed) is checked against the
// document's Problem schema, and a 405 must carry Allow.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/httpapi/internal/urlpath"
)

// maxBody bounds the answer bodies the Transport reads.
const maxBody = 16 << 20

// Doc is the API's OpenAPI document, loaded and validated, with the means to match
// requests to its operations.
type Doc struct {
	T      *openapi3.T
	mux    *http.ServeMux            // the document's operations, routed as the server routes them
	routes map[string]*routers.Route // by mux pattern
}

var (
	loadOnce sync.Once
	loaded   *Doc
	loadErr  error
)

// Load returns the API's document, parsed and validated once per process.
func Load() (*Doc, error) {
	loadOnce.Do(func() { loaded, loadErr = parse(httpapi.OpenAPI()) })
	return loaded, loadErr
}

func parse(b []byte) (*Doc, error) {
	// The example's page and files are text; kin-openapi decodes only text/plain so
	// out of the box (RegisterBodyDecoder is process-wide, hence here, once).
	for _, ct := range []string{"text/html", "text/javascript", "text/css", "image/svg+xml", "application/openmetrics-text"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
	l := openapi3.NewLoader()
	t, err := l.LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("openapitest: load the document: %w", err)
	}
	if err := t.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapitest: the document is not valid OpenAPI: %w", err)
	}
	closeAnswers(t)
	d := &Doc{T: t, mux: http.NewServeMux(), routes: make(map[string]*routers.Route)}
	for path, item := range t.Paths.Map() {
		for method, op := range item.Operations() {
			p := muxPattern(method, path)
			d.routes[p] = &routers.Route{Spec: t, Path: path, PathItem: item, Method: method, Operation: op}
			d.mux.HandleFunc(p, capture)
		}
	}
	return d, nil
}

// closeAnswers makes every object schema of an answer refuse a member it does not
// name, unless the schema says whether it takes others (Problem takes extension
// members). The document leaves answers open, so that a client generated from it
// accepts a member a later version adds; the tests hold this version's server to
// exactly the members the document names. A member of an allOf stays as it is: it
// names only some of the members (a problem's status and code).
func closeAnswers(t *openapi3.T) {
	closed := false
	walked := make(map[*openapi3.Schema]bool) // schema → walked closing it
	var walk func(ref *openapi3.SchemaRef, close bool)
	walk = func(ref *openapi3.SchemaRef, close bool) {
		if ref == nil || ref.Value == nil {
			return
		}
		s := ref.Value
		if c, ok := walked[s]; ok && (c || !close) {
			return
		}
		walked[s] = close
		if close && len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties.Has = &closed
		}
		for _, p := range s.Properties {
			walk(p, true)
		}
		walk(s.Items, true)
		for _, refs := range []openapi3.SchemaRefs{s.OneOf, s.AnyOf, s.PrefixItems} {
			for _, r := range refs {
				walk(r, true)
			}
		}
		for _, r := range s.AllOf {
			walk(r, false)
		}
	}
	for _, item := range t.Paths.Map() {
		for _, op := range item.Operations() {
			for _, resp := range op.Responses.Map() {
				if resp.Value == nil {
					continue
				}
				for _, mt := range resp.Value.Content {
					walk(mt.Schema, true)
				}
			}
		}
	}
}

// Patterns returns the document's operations as http.ServeMux patterns ("GET
// /v1/skus/{sku}"), sorted.
func (d *Doc) Patterns() []string {
	out := make([]string, 0, len(d.routes))
	for p := range d.routes {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// muxPattern is the http.ServeMux pattern of an OpenAPI path: a path ending in "/" is
// the page at exactly that path, so it becomes "{$}".
func muxPattern(method, path string) string {
	if strings.HasSuffix(path, "/") {
		path += "{$}"
	}
	return method + " " + path
}

// match is what the document's mux found for a request.
type match struct {
	pattern string
	params  map[string]string
}

type matchKey struct{}

// capture records the pattern and path values the mux matched into the request's match.
func capture(_ http.ResponseWriter, r *http.Request) {
	m := r.Context().Value(matchKey{}).(*match)
	m.pattern = r.Pattern
	m.params = make(map[string]string)
	for _, seg := range strings.Split(r.Pattern, "/") {
		if strings.HasPrefix(seg, "{") && seg != "{$}" {
			name := strings.Trim(seg, "{}")
			m.params[name] = r.PathValue(name)
		}
	}
}

// find returns the operation that serves req, routed as the server's mux routes it,
// and its path parameters; nil when none does.
func (d *Doc) find(req *http.Request) (*routers.Route, map[string]string) {
	u, dot := req.URL, ""
	if !urlpath.Canonical(u.Path) {
		// A SKU's route for an invalid SKU id, which the server routes to answer 400
		// invalid_sku, is matched with the server's stand-in for the id.
		standIn, id, ok := urlpath.DotSKU(u.Path)
		if !ok {
			return nil, nil
		}
		stand := *u
		stand.Path, stand.RawPath = standIn, ""
		u, dot = &stand, id
	}
	var m match
	probe := (&http.Request{Method: req.Method, URL: u, Host: req.Host, Header: http.Header{}}).
		WithContext(context.WithValue(context.Background(), matchKey{}, &m))
	if _, pattern := d.mux.Handler(probe); pattern == "" {
		return nil, nil
	}
	d.mux.ServeHTTP(discard{}, probe)
	if u != req.URL {
		m.params["sku"] = dot
	}
	return d.routes[m.pattern], m.params
}

// discard is a ResponseWriter that writes nowhere: the document's mux only matches.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// MustLoad is Load for tests: it fails tb when the document does not load.
func MustLoad(tb interface {
	Helper()
	Fatalf(string, ...any)
}) *Doc {
	tb.Helper()
	d, err := Load()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return d
}

// Transport is an http.RoundTripper that validates what passes through it against the
// document. Its zero value is not usable: see NewTransport.
type Transport struct {
	Base http.RoundTripper // nil: http.DefaultTransport
	doc  *Doc
}

// NewTransport returns a validating Transport in front of base (nil for
// http.DefaultTransport). It panics if the document does not load: every test would
// fail anyway, and the document's own test says why.
func NewTransport(base http.RoundTripper) *Transport {
	d, err := Load()
	if err != nil {
		panic(err)
	}
	return &Transport{Base: base, doc: d}
}

// Wrap makes hc validate its traffic, and returns it.
func Wrap(hc *http.Client) *http.Client {
	hc.Transport = NewTransport(hc.Transport)
	return hc
}

// ValidationError is an answer, or an accepted request, that the document does not
// describe.
type ValidationError struct {
	Method, URL string
	Status      int
	What        string // "answer" or "request"
	Err         error
	Body        []byte
}

func (e *ValidationError) Error() string {
	body := e.Body
	if len(body) > 512 {
		body = append(body[:512:512], "…"...)
	}
	return fmt.Sprintf("openapitest: %s %s: the %s (status %d) does not follow the OpenAPI document: %v; body %s",
		e.Method, e.URL, e.What, e.Status, e.Err, body)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// RoundTrip sends req through the base transport and validates the answer; see the
// package comment. A transport error is returned as it is.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := t.doc.Check(req, reqBody, resp.StatusCode, resp.Header, body); err != nil {
		return nil, err
	}
	return resp, nil
}

// Check validates one exchange: the answer always, the request when the server
// accepted it (a 2xx or 304). req's body is reqBody.
func (d *Doc) Check(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	fail := func(what string, err error) error {
		return &ValidationError{Method: req.Method, URL: req.URL.String(), Status: status, What: what, Err: err, Body: body}
	}
	if header.Get("X-Request-Id") == "" {
		return fail("answer", errors.New("no X-Request-Id"))
	}
	if req.Method == http.MethodHead {
		return nil // no body; the headers are GET's, checked on GET
	}
	route, params := d.find(req)
	if route == nil {
		return d.checkUnrouted(status, header, body, fail)
	}
	if want, ok := anyOperation[status]; ok && route.Operation.Responses.Status(status) == nil &&
		(status == http.StatusRequestHeaderFieldsTooLarge || len(reqBody) > 0) {
		// A request whose headers or body no operation takes (the document's
		// description says so once, not on each operation); 413 and 415 only to a
		// request with a body.
		return d.checkProblem(want, status, header, body, fail)
	}
	opts := &openapi3filter.Options{
		AuthenticationFunc:    bearerPresent,
		IncludeResponseStatus: true,
		SkipSettingDefaults:   true,
		MultiError:            true,
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	ctx := context.Background()
	if status/100 == 2 || status == http.StatusNotModified {
		r := req.Clone(ctx)
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		in.Request = r
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return fail("request", fmt.Errorf("the server accepted a request the document refuses: %w", err))
		}
		in.Request = req
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                opts,
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fail("answer", err)
	}
	if status == http.StatusNoContent || status == http.StatusNotModified {
		if len(body) != 0 {
			return fail("answer", fmt.Errorf("a %d with a body", status))
		}
	}
	return nil
}

// checkUnrouted validates the answer to a request no operation serves: a problem
// document of the Problem schema, 404 not_found, 405 method_not_allowed with Allow, or
// 429 rate_limited with Retry-After (the client address's limit counts such requests
// too).
func (d *Doc) checkUnrouted(status int, header http.Header, body []byte, fail func(string, error) error) error {
	var want string
	switch status {
	case http.StatusNotFound:
		want = "not_found"
	case http.StatusMethodNotAllowed:
		want = "method_not_allowed"
		if header.Get("Allow") == "" {
			return fail("answer", errors.New("a 405 without Allow"))
		}
	case http.StatusTooManyRequests:
		want = "rate_limited"
		if header.Get("Retry-After") == "" {
			return fail("answer", errors.New("a 429 without Retry-After"))
		}
	default:
		return fail("answer", fmt.Errorf("status %d to a request that no operation of the document serves", status))
	}
	return d.checkProblem(want, status, header, body, fail)
}

// anyOperation are the problems any operation may answer, by status, which the
// document's description names once: a body or header fields it cannot take.
var anyOperation = map[int]string{
	http.StatusRequestEntityTooLarge:       "body_too_large",
	http.StatusUnsupportedMediaType:        "unsupported_media_type",
	http.StatusRequestHeaderFieldsTooLarge: "header_too_large",
}

// checkProblem validates a problem document of code want and status.
func (d *Doc) checkProblem(want string, status int, header http.Header, body []byte, fail func(string, error) error) error {
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		return fail("answer", fmt.Errorf("Content-Type %q, want application/problem+json", ct))
	}
	schema := d.T.Components.Schemas["Problem"].Value
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fail("answer", err)
	}
	if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return fail("answer", err)
	}
	if m, _ := v.(map[string]any); m["code"] != want || m["status"] != float64(status) {
		return fail("answer", fmt.Errorf("code %v, status %v: want %s, %d", m["code"], m["status"], want, status))
	}
	return nil
}

// bearerPresent is the security check of an accepted request: an operation that
// needs the bearer scheme was sent a bearer token.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecuritySchemeName != "bearer" {
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	v := in.RequestValidationInput.Request.Header.Get("Authorization")
	if len(v) < 8 || !strings.EqualFold(v[:7], "bearer ") {
		return errors.New("no Authorization: Bearer token")
	}
	return nil
}
