package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
)

// serveBare serves the yardstick on addr until killed: a plain net/http handler that
// reads and decodes a small JSON body with encoding/json and writes a small JSON 201,
// the least any JSON endpoint does.
func serveBare(addr string) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /reserve", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Quantity int `json:"quantity"`
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil || json.Unmarshal(b, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"id": "01JBENCH00000000000000000", "quantity": req.Quantity, "status": "held"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Fprintln(os.Stderr, "bare handler:", err)
		os.Exit(1)
	}
}
