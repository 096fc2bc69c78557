package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/valyala/fasthttp"
)

// holdFunc makes the hold behind a yardstick's 201 and returns its id.
type holdFunc func(ctx context.Context, quantity int64) (string, error)

// benchID is the bare yardsticks' hold: none, the same id every time.
func benchID(context.Context, int64) (string, error) { return "01JBENCH00000000000000000", nil }

// serveBare serves the yardstick on addr until killed: a plain net/http handler that
// reads and decodes a small JSON body with encoding/json and writes a small JSON 201,
// the least any JSON endpoint does.
func serveBare(addr string) {
	if err := http.ListenAndServe(addr, bareMux(benchID)); err != nil {
		fmt.Fprintln(os.Stderr, "bare handler:", err)
		os.Exit(1)
	}
}

// bareMux is the net/http yardstick, with hold making its holds.
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
		id, err := hold(r.Context(), req.Quantity)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"id": id, "quantity": req.Quantity, "status": "held"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	return mux
}

// serveBareFast serves the same yardstick with fasthttp instead of net/http (the
// barefast variant): what the HTTP server core alone costs, for comparison.
func serveBareFast(addr string) {
	if err := fasthttp.ListenAndServe(addr, bareFast(benchID)); err != nil {
		fmt.Fprintln(os.Stderr, "bare fasthttp handler:", err)
		os.Exit(1)
	}
}

// bareFast is the fasthttp yardstick, with hold making its holds.
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
			id, err := hold(ctx, req.Quantity)
			if err != nil {
				ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
				return
			}
			ctx.SetContentType("application/json")
			ctx.SetStatusCode(fasthttp.StatusCreated)
			json.NewEncoder(ctx).Encode(map[string]any{"id": id, "quantity": req.Quantity, "status": "held"})
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	}
}
