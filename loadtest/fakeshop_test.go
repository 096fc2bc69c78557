package loadtest_test

import (
	"net"
	"sync/atomic"

	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeShop is a small, correct implementation of the parts of the v1 API that the load
// test drives, with switches that break one guarantee each. One mutex serialises
// everything: it is the serialisation point of every SKU.
type fakeShop struct {
	conns        atomic.Int64 // connections accepted
	oversell     bool         // skip the stock check
	ignoreLimit  bool         // skip the per-customer limit check
	admitBots    bool         // skip the bot check
	loseOne      bool         // leave the first reservation out of GET /v1/orders
	staleSoldOut bool         // refuse sold_out while units are free (after the first 5 holds)
	shed         int          // refuse this many reservations 503 unavailable first (load shedding)

	admin string

	mu       sync.Mutex
	tokens   map[string]bool // bot-check token → spent
	ntok     int
	tokFirst int               // tokens issued when the first reservation came; -1 before it
	sessions map[string]string // session token → customer
	skus     map[string]*fakeSKU
	res      []*fakeRes // in creation order
	byID     map[string]*fakeRes
	idem     map[string]*fakeRes // customer + "\x00" + key
}

type fakeSKU struct {
	stock, available, held, sold, limit, holdSeconds int64
}

type fakeRes struct {
	ID          string     `json:"id"`
	SKU         string     `json:"sku"`
	CustomerID  string     `json:"customer_id"`
	Quantity    int64      `json:"quantity"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
	ReleasedAt  *time.Time `json:"released_at"`
	OrderRef    *string    `json:"order_ref"`
}

// MustStartFakeShop starts f on 127.0.0.1 and returns its URL.
func MustStartFakeShop(tb testing.TB, f *fakeShop) string {
	tb.Helper()
	f.admin = "admin-secret"
	f.tokens, f.sessions, f.tokFirst = make(map[string]bool), make(map[string]string), -1
	f.skus, f.byID, f.idem = make(map[string]*fakeSKU), make(map[string]*fakeRes), make(map[string]*fakeRes)
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/skus/{sku}", f.putSKU)
	mux.HandleFunc("GET /v1/skus/{sku}", f.getSKU)
	mux.HandleFunc("POST /v1/sessions", f.createSession)
	mux.HandleFunc("POST /v1/skus/{sku}/reservations", f.reserve)
	mux.HandleFunc("POST /v1/reservations/{id}/confirm", f.change)
	mux.HandleFunc("POST /v1/reservations/{id}/release", f.change)
	mux.HandleFunc("GET /v1/orders", f.orders)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			f.conns.Add(1)
		}
	}
	srv.Start()
	tb.Cleanup(srv.Close)
	return srv.URL
}

// Token issues a single-use bot-check token (loadtest.TokenSource).
func (f *fakeShop) Token() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ntok++
	t := fmt.Sprintf("tok-%d", f.ntok)
	f.tokens[t] = false
	return t
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": code, "status": status, "detail": code, "code": code})
}

func (f *fakeShop) isAdmin(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+f.admin
}

// expire moves every due hold to expired; f.mu is held.
func (f *fakeShop) expire(now time.Time) {
	for _, r := range f.res {
		if r.Status == "held" && !now.Before(r.ExpiresAt) {
			r.Status = "expired"
			s := f.skus[r.SKU]
			s.held -= r.Quantity
			s.available += r.Quantity
		}
	}
}

func (f *fakeShop) putSKU(w http.ResponseWriter, r *http.Request) {
	if !f.isAdmin(r) {
		writeProblem(w, 401, "unauthenticated")
		return
	}
	var in map[string]int64
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeProblem(w, 400, "invalid_request")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.PathValue("sku")
	f.skus[id] = &fakeSKU{stock: in["stock"], available: in["stock"], limit: in["per_customer_limit"], holdSeconds: in["hold_seconds"]}
	writeJSON(w, 201, f.skuBody(id))
}

func (f *fakeShop) skuBody(id string) map[string]any {
	s := f.skus[id]
	return map[string]any{"sku": id, "stock": s.stock, "available": s.available, "held": s.held, "sold": s.sold,
		"per_customer_limit": s.limit, "hold_seconds": s.holdSeconds, "opens_at": nil}
}

func (f *fakeShop) getSKU(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire(time.Now())
	if f.skus[r.PathValue("sku")] == nil {
		writeProblem(w, 404, "sku_not_found")
		return
	}
	writeJSON(w, 200, f.skuBody(r.PathValue("sku")))
}

func (f *fakeShop) createSession(w http.ResponseWriter, r *http.Request) {
	var in struct {
		CustomerID string `json:"customer_id"`
		TTLSeconds int    `json:"ttl_seconds"`
	}
	if !f.isAdmin(r) || json.NewDecoder(r.Body).Decode(&in) != nil {
		writeProblem(w, 400, "invalid_request")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := fmt.Sprintf("sess-%d-%s", len(f.sessions), in.CustomerID)
	f.sessions[tok] = in.CustomerID
	writeJSON(w, 201, map[string]any{"token": tok, "customer_id": in.CustomerID, "expires_at": time.Now().Add(time.Hour)})
}

// customer returns the caller's customer id, or "" (f.mu is held).
func (f *fakeShop) customer(r *http.Request) string {
	const p = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(p) {
		return ""
	}
	return f.sessions[h[len(p):]]
}

func (f *fakeShop) reserve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.tokFirst < 0 {
		f.tokFirst = f.ntok
	}
	f.mu.Unlock()
	var in struct {
		Quantity int64 `json:"quantity"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeProblem(w, 400, "invalid_request")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.expire(now)
	cust := f.customer(r)
	if cust == "" {
		writeProblem(w, 401, "unauthenticated")
		return
	}
	if f.shed > 0 {
		f.shed--
		writeProblem(w, 503, "unavailable")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if prev := f.idem[cust+"\x00"+key]; key != "" && prev != nil {
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, 201, prev)
		return
	}
	sku := f.skus[r.PathValue("sku")]
	switch {
	case sku == nil:
		writeProblem(w, 404, "sku_not_found")
		return
	case !f.oversell && sku.available < in.Quantity:
		writeProblem(w, 409, "sold_out") // the fast path: no bot check spent
		return
	case f.staleSoldOut && len(f.res) >= 5:
		writeProblem(w, 409, "sold_out")
		return
	}
	if tok := r.Header.Get("CF-Turnstile-Response"); !f.admitBots {
		spent, ok := f.tokens[tok]
		if !ok || spent {
			writeProblem(w, 403, "bot_check_failed")
			return
		}
		f.tokens[tok] = true
	}
	var have int64
	for _, x := range f.res {
		if x.CustomerID == cust && x.SKU == r.PathValue("sku") && (x.Status == "held" || x.Status == "confirmed") {
			have += x.Quantity
		}
	}
	if !f.ignoreLimit && have+in.Quantity > sku.limit {
		writeProblem(w, 409, "limit_exceeded")
		return
	}
	res := &fakeRes{ID: fmt.Sprintf("r%08d", len(f.res)), SKU: r.PathValue("sku"), CustomerID: cust, Quantity: in.Quantity,
		Status: "held", CreatedAt: now.UTC(), ExpiresAt: now.UTC().Add(time.Duration(sku.holdSeconds) * time.Second)}
	sku.available -= in.Quantity
	sku.held += in.Quantity
	f.res = append(f.res, res)
	f.byID[res.ID] = res
	if key != "" {
		f.idem[cust+"\x00"+key] = res
	}
	w.Header().Set("Location", "/v1/reservations/"+res.ID)
	writeJSON(w, 201, res)
}

// change confirms or releases a reservation.
func (f *fakeShop) change(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.expire(now)
	res := f.byID[r.PathValue("id")]
	if res == nil || res.CustomerID != f.customer(r) {
		writeProblem(w, 404, "reservation_not_found")
		return
	}
	sku := f.skus[res.SKU]
	confirm := r.URL.Path[len(r.URL.Path)-len("confirm"):] == "confirm"
	switch {
	case res.Status == "expired":
		writeProblem(w, 409, "hold_expired")
		return
	case confirm && res.Status == "released":
		writeProblem(w, 409, "hold_released")
		return
	case !confirm && res.Status == "confirmed":
		writeProblem(w, 409, "already_confirmed")
		return
	case confirm && res.Status == "held":
		res.Status, res.ConfirmedAt = "confirmed", &now
		sku.held -= res.Quantity
		sku.sold += res.Quantity
	case !confirm && res.Status == "held":
		t := now.UTC()
		res.Status, res.ReleasedAt = "released", &t
		sku.held -= res.Quantity
		sku.available += res.Quantity
	}
	writeJSON(w, 200, res)
}

func (f *fakeShop) orders(w http.ResponseWriter, r *http.Request) {
	if !f.isAdmin(r) {
		writeProblem(w, 403, "forbidden")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire(time.Now())
	match := []*fakeRes{} // an empty page is [], never null
	for i, x := range f.res {
		if (i == 0 && f.loseOne) || x.SKU != r.URL.Query().Get("sku") {
			continue
		}
		match = append(match, x)
	}
	from, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	to := min(from+limit, len(match))
	var next any
	if to < len(match) {
		next = strconv.Itoa(to)
	}
	writeJSON(w, 200, map[string]any{"items": match[from:to], "next_cursor": next})
}
