package httpapi

import "github.com/valyala/fasthttp"

// ServeCtx answers ctx's request as a connection of t would, for the benchmarks of
// the whole server in process.
func (t *HTTPServer) ServeCtx(ctx *fasthttp.RequestCtx) { t.serve(ctx) }
