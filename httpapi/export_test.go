package httpapi

import (
	"net/http"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

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
