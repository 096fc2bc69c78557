package httpapi

import (
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// EchoableRequestID reports whether the API lets the server echo id as the
// X-Request-Id of its answer: 1 to 128 characters from [A-Za-z0-9._:+/=@-]. It is
// the tests' reading of the contract, not the server's validRequestID.
func EchoableRequestID(id string) bool {
	return id != "" && len(id) <= 128 && strings.Trim(id, saneRequestIDChars) == ""
}

// ServeCtx answers ctx's request as a connection of t would, for the benchmarks of
// the whole server in process.
func (t *HTTPServer) ServeCtx(ctx *fasthttp.RequestCtx) { t.serve(ctx) }

// NewHTTPServerForTest is NewHTTPServer with the reserve lane on or off; general, when
// set, counts the requests that go the general path (the middleware and routes).
func (s *Server) NewHTTPServerForTest(cfg HTTPConfig, lane bool, general *atomic.Int64) *HTTPServer {
	t := s.NewHTTPServer(cfg)
	t.lane = lane
	if general != nil {
		handle := t.handle
		t.handle = func(w http.ResponseWriter, r *http.Request, id string) {
			general.Add(1)
			handle(w, r, id)
		}
	}
	return t
}
