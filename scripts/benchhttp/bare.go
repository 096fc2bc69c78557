package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/revenueguard/revguard"
	"github.com/valyala/fasthttp"
)

// holdFunc makes the hold behind a yardstick's 201 and returns the answer's body.
type holdFunc func(ctx context.Context, quantity int64) ([]byte, error)

// benchHold is the bare yardsticks' hold: none. The body is encoded with encoding/json
// on every request, the least a JSON endpoint does.
func benchHold(_ context.Context, quantity int64) ([]byte, error) {
	b, err := json.Marshal(map[string]any{"id": "01JBENCH00000000000000000", "quantity": quantity, "status": "held"})
	return append(b, '\n'), err
}

// holdStatus is the status of a failed hold: 400 for a request the engine calls
// invalid (a quantity below 1), else 500.
func holdStatus(err error) int {
	if revguard.ErrorCode(err) == revguard.CodeInvalidRequest {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// serveYardstick serves a yardstick on addr until killed, on net/http (bareMux) or,
// fast, on fasthttp (bareFast), with hold making its holds.
func serveYardstick(addr string, fast bool, hold holdFunc) {
	var err error
	if fast {
		err = fasthttp.ListenAndServe(addr, bareFast(hold))
	} else {
		err = http.ListenAndServe(addr, bareMux(hold))
	}
	fmt.Fprintln(os.Stderr, "yardstick:", err)
	os.Exit(1)
}

// bareMux is the net/http yardstick, with hold making its holds: it reads and decodes
// a small JSON body with encoding/json and writes hold's JSON 201, the least any JSON
// endpoint does.
func bareMux(hold holdFunc) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /reserve", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Quantity int64 `json:"quantity"`
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil || json.Unmarshal(b, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		body, err := hold(r.Context(), req.Quantity)
		if err != nil {
			http.Error(w, err.Error(), holdStatus(err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	return mux
}

// bareFast is the same yardstick on fasthttp instead of net/http (the barefast and
// floorfast variants): what the HTTP server core alone costs, for comparison.
func bareFast(hold holdFunc) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch {
		case string(ctx.Path()) == "/readyz" && ctx.IsGet():
		case string(ctx.Path()) == "/reserve" && ctx.IsPost():
			var req struct {
				Quantity int64 `json:"quantity"`
			}
			if len(ctx.PostBody()) > 64<<10 || json.Unmarshal(ctx.PostBody(), &req) != nil {
				ctx.Error("bad request", fasthttp.StatusBadRequest)
				return
			}
			body, err := hold(ctx, req.Quantity)
			if err != nil {
				ctx.Error(err.Error(), holdStatus(err))
				return
			}
			ctx.SetContentType("application/json")
			ctx.SetStatusCode(fasthttp.StatusCreated)
			ctx.Write(body)
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	}
}
