package httpapi

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"math"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/revenueguard/revguard"
)

// Dashboard feeds the live dashboard (GET /dashboard/ and its stream). Each open
// dashboard costs one snapshot per Interval, read off the hot path: the SKUs' counts
// (each read under its SKU's lock, as GET /v1/skus/{sku} does), the metrics registry
// and the webhook store; nothing is added to the reservation path.
type Dashboard struct {
	// SKUs calls fn with every SKU until it returns false; nil shows no SKUs.
	SKUs func(fn func(revguard.SKU) bool)
	// LedgerLag is how long the oldest event the ledger lacks has waited; nil: unknown.
	LedgerLag func() time.Duration
	// Nodes reports the health of each node, and its counters (NodeStats) where the
	// charts should show the fleet's; nil shows this one, from Server.Ready.
	Nodes func(ctx context.Context) []DashboardNode
	// Interval between snapshots; 0 means a second.
	Interval time.Duration
	// MaxSKUs bounds the SKUs of a snapshot (the first by id); 0 means 10,000.
	MaxSKUs int
}

// DashboardNode is one node's health as the dashboard shows it.
type DashboardNode struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Detail string `json:"detail,omitempty"`
	// Stats, when set, are the node's counters: the dashboard then charts the sum
	// of the nodes' decisions and latency instead of this node's own.
	Stats *NodeStats `json:"-"`
}

//go:embed dashboard
var dashboardFiles embed.FS

var dashboardTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// handleDashboardPage serves the page (no token: it holds no data; its stream needs
// the admin token or a dashboard link's).
func (s *Server) handleDashboardPage(w http.ResponseWriter, r *http.Request) {
	s.serveDashboardFile(w, r, "index.html")
}

func (s *Server) handleDashboardAsset(w http.ResponseWriter, r *http.Request) {
	s.serveDashboardFile(w, r, r.PathValue("file"))
}

func (s *Server) serveDashboardFile(w http.ResponseWriter, r *http.Request, name string) {
	ctype, ok := dashboardTypes[path.Ext(name)]
	var b []byte
	if ok {
		var err error
		b, err = fs.ReadFile(dashboardFiles, "dashboard/"+name)
		ok = err == nil
	}
	if !ok {
		if !s.limitUnserved(w, r) {
			s.writeProblem(w, r, revguard.CodeNotFound, "no such file")
		}
		return
	}
	h := w.Header()
	h["Content-Security-Policy"] = []string{"default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"}
	h["Content-Type"] = []string{ctype}
	h["Cache-Control"] = noCache
	h["Referrer-Policy"] = []string{"no-referrer"}
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// dashboardTokenPrefix starts a dashboard link's token: "dsh_" + expiry (unix seconds)
// + "_" + base64url(HMAC-SHA256(sha256(admin token), "dashboard:" + expiry)).
const dashboardTokenPrefix = "dsh_"

// DashboardToken returns a token that opens the dashboard's stream (and nothing else)
// until expires, for a link printed at start: /dashboard/#token=<token>. It is empty
// when the server has no admin token.
func (s *Server) DashboardToken(expires time.Time) string {
	s.once.Do(s.build)
	if s.AdminToken == "" {
		return ""
	}
	exp := strconv.FormatInt(expires.Unix(), 10)
	return dashboardTokenPrefix + exp + "_" + s.dashboardMAC(exp)
}

func (s *Server) dashboardMAC(exp string) string {
	m := hmac.New(sha256.New, s.adminHash[:])
	m.Write([]byte("dashboard:" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// dashboardToken reports whether token is a dashboard link's token of this server
// (valid) and, if so, whether it has not expired (live).
func (s *Server) dashboardToken(token string) (valid, live bool) {
	if !strings.HasPrefix(token, dashboardTokenPrefix) || s.AdminToken == "" {
		return false, false
	}
	exp, mac, _ := strings.Cut(token[len(dashboardTokenPrefix):], "_")
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !hmac.Equal([]byte(mac), []byte(s.dashboardMAC(exp))) {
		return false, false
	}
	return true, s.Now().Unix() < n
}

// requireDashboard authenticates the dashboard's stream: the admin token, or an
// unexpired dashboard link token.
func (s *Server) requireDashboard(w http.ResponseWriter, r *http.Request) bool {
	if token, ok := bearerToken(r.Header["Authorization"]); ok {
		if valid, live := s.dashboardToken(token); live {
			return s.getBodyAllowed(w, r)
		} else if valid {
			s.refuseUnauthenticated(w, r, "", challengeInvalidToken, "the dashboard link has expired; enter the admin token")
			return false
		}
	}
	return s.requireAdmin(w, r)
}

// handleDashboardStream streams a snapshot of the sale every Interval as a
// server-sent event "snapshot" (admin or dashboard link).
func (s *Server) handleDashboardStream(w http.ResponseWriter, r *http.Request) {
	if !s.requireDashboard(w, r) {
		return
	}
	if !s.noQuery(w, r) {
		return
	}
	d := s.Dashboard
	if d == nil {
		d = &Dashboard{}
	}
	ctx, cancel := s.streamContext(r)
	defer cancel()
	rc := startStream(w, r, "no-cache")
	if rc == nil {
		return
	}
	w.Write([]byte("retry: " + strconv.Itoa(streamRetryMillis) + "\n\n"))
	// A dashboard link's token opens the stream until it expires, an open one too:
	// then the page asks for the admin token.
	token, _ := bearerToken(r.Header["Authorization"])
	link, _ := s.dashboardToken(token)
	sm := &sampler{s: s, d: d}
	t := time.NewTicker(cmp.Or(d.Interval, time.Second))
	defer t.Stop()
	for {
		b := sm.snapshot(ctx)
		buf := make([]byte, 0, len(b)+32)
		buf = append(buf, "event: snapshot\ndata: "...)
		buf = append(buf, b...)
		buf = append(buf, "\n\n"...)
		w.Write(buf)
		if !flush(w, rc) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, live := s.dashboardToken(token); link && !live {
			return
		}
	}
}

// The reserve route, whose latency the dashboard shows.
const reserveRoute = "POST /v1/skus/{sku}/reservations"

// sampler computes one stream's snapshots; it keeps the last counters to show rates.
type sampler struct {
	s        *Server
	d        *Dashboard
	prevAt   time.Time
	outcomes map[string]float64 // cumulative, by outcome
	// The cumulative counts of the reserve latency histogram at each snapshot of the
	// last latencyWindow, oldest first, and the buckets' bounds.
	buckets [][]float64
	times   []time.Time
	bounds  []float64
	fleet   fleetCounters // the fleet's counters, when the nodes report theirs
}

// latencyWindow is the span of the latency percentiles.
const latencyWindow = time.Minute

type dashSKU struct {
	SKU       string    `json:"sku"`
	Stock     int64     `json:"stock"`
	Available int64     `json:"available"`
	Held      int64     `json:"held"`
	Sold      int64     `json:"sold"`
	Room      *dashRoom `json:"waiting_room,omitempty"` // absent without a waiting room
}

// dashRoom is the size of a SKU's waiting room.
type dashRoom struct {
	Waiting  int64 `json:"waiting"` // in the pre-queue or in line
	Admitted int64 `json:"admitted"`
	Used     int64 `json:"used"`
	SoldOut  bool  `json:"sold_out"`
}

type dashWebhook struct {
	ID        string                 `json:"id"`
	URL       string                 `json:"url"`
	Status    revguard.WebhookStatus `json:"status"`
	Failures  int                    `json:"failures"`
	LastError string                 `json:"last_error,omitempty"`
	Backlog   uint64                 `json:"backlog"`
}

type dashSnapshot struct {
	Time       time.Time          `json:"time"`
	Interval   float64            `json:"interval_seconds"`
	SKUs       []dashSKU          `json:"skus"`
	SKUCount   int                `json:"sku_count"`
	Decisions  map[string]float64 `json:"decisions"` // per second over the last interval, by outcome
	Totals     map[string]float64 `json:"totals"`    // since start, by outcome
	Latency    map[string]float64 `json:"latency"`   // reserve latency percentiles (seconds) over the last minute
	LedgerLag  *float64           `json:"ledger_lag_seconds"`
	Nodes      []DashboardNode    `json:"nodes"`
	Webhooks   []dashWebhook      `json:"webhooks"`
	LastChange uint64             `json:"last_change"`
}

func (sm *sampler) snapshot(ctx context.Context) []byte {
	now := time.Now()
	d := sm.d
	snap := dashSnapshot{Time: sm.s.Now().UTC().Truncate(time.Millisecond), SKUs: []dashSKU{}, Nodes: []DashboardNode{}, Webhooks: []dashWebhook{}}
	maxSKUs := cmp.Or(d.MaxSKUs, 10000)
	if d.SKUs != nil {
		d.SKUs(func(k revguard.SKU) bool {
			snap.SKUCount++
			snap.SKUs = append(snap.SKUs, dashSKU{SKU: k.ID, Stock: k.Stock, Available: k.Available, Held: k.Held, Sold: k.Sold})
			return true
		})
		slices.SortFunc(snap.SKUs, func(a, b dashSKU) int { return strings.Compare(a.SKU, b.SKU) })
		if len(snap.SKUs) > maxSKUs {
			snap.SKUs = snap.SKUs[:maxSKUs]
		}
		if wr := sm.s.WaitingRoom; wr != nil {
			for i := range snap.SKUs {
				if r, err := wr.FindRoom(ctx, snap.SKUs[i].SKU); err == nil && r.Enabled {
					snap.SKUs[i].Room = &dashRoom{Waiting: r.PreQueue + r.Waiting, Admitted: r.Admitted, Used: r.Used, SoldOut: r.SoldOut}
				}
			}
		}
	}
	if d.Nodes != nil {
		snap.Nodes = d.Nodes(ctx)
	} else {
		n := DashboardNode{Name: "this node", Ready: true}
		if sm.s.Ready != nil {
			if err := sm.s.Ready(ctx); err != nil {
				n.Ready, n.Detail = false, errDetail(err)
			}
		}
		snap.Nodes = append(snap.Nodes, n)
	}
	sm.metrics(now, &snap, snap.Nodes)
	if d.LedgerLag != nil {
		lag := d.LedgerLag().Seconds()
		snap.LedgerLag = &lag
	}
	if sm.s.Changes != nil {
		snap.LastChange = sm.s.Changes.LastChange()
	}
	if sm.s.Webhooks != nil {
		if list, err := sm.s.Webhooks.ListWebhooks(ctx); err == nil {
			for _, wh := range list {
				var backlog uint64
				if snap.LastChange > wh.Cursor {
					backlog = snap.LastChange - wh.Cursor
				}
				snap.Webhooks = append(snap.Webhooks, dashWebhook{wh.ID, wh.URL, wh.Status, wh.Failures, wh.LastError, backlog})
			}
		}
	}
	b, _ := json.Marshal(snap)
	return b
}

func errDetail(err error) string {
	if e, ok := err.(*revguard.Error); ok {
		return e.Detail
	}
	return "not ready"
}

// metrics reads the decisions by outcome and the reserve latency: the fleet's when the
// nodes report their stats (distributed mode), else this node's (Server.Stats).
func (sm *sampler) metrics(now time.Time, snap *dashSnapshot, nodes []DashboardNode) {
	var st NodeStats
	if reportsStats(nodes) {
		st, snap.Totals = sm.fleet.add(nodes)
	} else {
		st = sm.s.Stats()
		snap.Totals = st.Outcomes
	}
	outcomes, buckets, bounds := st.Outcomes, st.Buckets, st.Bounds
	snap.Decisions = map[string]float64{}
	snap.Latency = map[string]float64{}
	if !sm.prevAt.IsZero() {
		secs := now.Sub(sm.prevAt).Seconds()
		snap.Interval = secs
		for k, v := range outcomes {
			if dv := v - sm.outcomes[k]; dv > 0 && secs > 0 {
				snap.Decisions[k] = math.Round(dv/secs*10) / 10
			}
		}
	}
	if buckets != nil && len(sm.buckets) == 0 && !sm.prevAt.IsZero() {
		// The histogram appeared since the last snapshot: it was all zeros then.
		sm.buckets, sm.times = [][]float64{make([]float64, len(buckets))}, []time.Time{sm.prevAt}
	}
	if len(buckets) > 0 && len(sm.buckets) > 0 && len(buckets) == len(sm.buckets[0]) {
		delta := make([]float64, len(buckets))
		for i := range buckets {
			delta[i] = buckets[i] - sm.buckets[0][i]
		}
		for _, p := range []struct {
			name string
			q    float64
		}{{"p50", .5}, {"p90", .9}, {"p99", .99}} {
			if v, ok := quantile(p.q, bounds, delta); ok {
				snap.Latency[p.name] = v
			}
		}
	}
	sm.prevAt, sm.outcomes, sm.bounds = now, outcomes, bounds
	if buckets != nil {
		sm.buckets, sm.times = append(sm.buckets, buckets), append(sm.times, now)
		for len(sm.times) > 1 && now.Sub(sm.times[0]) > latencyWindow {
			sm.buckets, sm.times = sm.buckets[1:], sm.times[1:]
		}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// quantile estimates the q-quantile of a histogram's cumulative bucket counts by
// linear interpolation within the bucket it falls in, as Prometheus'
// histogram_quantile does. It reports false when the histogram is empty.
func quantile(q float64, bounds, cum []float64) (float64, bool) {
	if len(cum) == 0 || cum[len(cum)-1] <= 0 {
		return 0, false
	}
	total := cum[len(cum)-1]
	rank := q * total
	lower, below := 0.0, 0.0
	for i, c := range cum {
		if c >= rank {
			if c == below {
				return bounds[i], true
			}
			return lower + (bounds[i]-lower)*(rank-below)/(c-below), true
		}
		lower, below = bounds[i], c
	}
	return bounds[len(bounds)-1], true // beyond the last finite bucket
}
