package loadtest

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The operations whose latencies and outcomes are recorded.
const (
	opSession = "session"
	opReserve = "reserve"
	opConfirm = "confirm"
	opRelease = "release"
	opSKU     = "get_sku"
	opOrders  = "orders"
	opArrival = "arrival_to_answer" // a customer's first answer, from its arrival: queueing included
)

// Latency bounds of the histograms: 1 µs to 2 minutes, three significant digits.
const (
	histMin    = 1
	histMax    = int64(2 * time.Minute / time.Microsecond)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// outcomeKey identifies a line of the outcome table.
type outcomeKey struct {
	op     string
	bot    bool
	status int
	code   string
}

// recorder collects latencies and outcomes from every customer goroutine.
type recorder struct {
	mu       sync.Mutex // guards everything below; never held while calling out
	hists    map[string]*hdrhistogram.Histogram
	window   *hdrhistogram.Histogram // reserve latencies since the last progress tick
	outcomes map[outcomeKey]int64
	requests int64 // sale requests answered or failed
	errors   int64 // transport errors and 5xx
	soldOut  int64 // reserve answers 409 sold_out

	now          func() time.Time
	firstSoldOut time.Time // when the first reserve answer 409 sold_out was recorded
	beforeSold   int64     // reserve answers recorded before it
}

func newRecorder(now func() time.Time) *recorder {
	return &recorder{
		now:      now,
		hists:    make(map[string]*hdrhistogram.Histogram),
		window:   newHist(),
		outcomes: make(map[outcomeKey]int64),
	}
}

// record adds one request's latency and outcome.
func (r *recorder) record(op string, bot bool, a answer, d time.Duration) {
	status, code := a.outcome()
	us := max(d.Microseconds(), histMin)
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hist(op)
	_ = h.RecordValue(min(us, histMax)) // clamped: cannot fail
	if op == opReserve {
		_ = r.window.RecordValue(min(us, histMax))
		if code == "sold_out" {
			if r.soldOut == 0 {
				r.firstSoldOut, r.beforeSold = r.now(), h.TotalCount()-1
			}
			r.soldOut++
		}
	}
	r.outcomes[outcomeKey{op: op, bot: bot, status: status, code: code}]++
	if op != opSession && op != opSKU && op != opOrders {
		r.requests++
	}
	if a.err != nil || status >= 500 {
		r.errors++
	}
}

// recordLatency adds a latency without an outcome.
func (r *recorder) recordLatency(op string, d time.Duration) {
	us := max(d.Microseconds(), histMin)
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.hist(op).RecordValue(min(us, histMax)) // clamped: cannot fail
}

// hist returns op's latency histogram, made on first use. Called with r.mu held.
func (r *recorder) hist(op string) *hdrhistogram.Histogram {
	h := r.hists[op]
	if h == nil {
		h = newHist()
		r.hists[op] = h
	}
	return h
}

// tick is a progress snapshot: counters so far and the reserve p99 since the last tick.
type tick struct {
	requests, errors, soldOut int64
	p99                       time.Duration
}

// tick returns the counters and restarts the window.
func (r *recorder) tick() tick {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := tick{requests: r.requests, errors: r.errors, soldOut: r.soldOut,
		p99: time.Duration(r.window.ValueAtQuantile(99)) * time.Microsecond}
	r.window.Reset()
	return t
}

// Latency summarises one operation's latencies, in milliseconds.
type Latency struct {
	Op    string  `json:"op"`
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(op string, h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Op: op, Count: h.TotalCount(), Mean: h.Mean() / 1000,
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)),
		Max: ms(h.Max()),
	}
}

// Outcome is a line of the outcome table: how many requests of one operation, from
// humans or bots, got one status and code. Status 0 is a transport error.
type Outcome struct {
	Op     string `json:"op"`
	Bot    bool   `json:"bot"`
	Status int    `json:"status"`
	Code   string `json:"code,omitempty"`
	Count  int64  `json:"count"`
}

var opOrder = map[string]int{opSession: 0, opReserve: 1, opConfirm: 2, opRelease: 3, opSKU: 4, opOrders: 5, opArrival: 6}

// summary returns the latencies and outcomes, in a stable order.
func (r *recorder) summary() ([]Latency, []Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lat []Latency
	for op, h := range r.hists {
		lat = append(lat, summarize(op, h))
	}
	slices.SortFunc(lat, func(a, b Latency) int { return cmp.Compare(opOrder[a.Op], opOrder[b.Op]) })
	var out []Outcome
	for k, n := range r.outcomes {
		out = append(out, Outcome{Op: k.op, Bot: k.bot, Status: k.status, Code: k.code, Count: n})
	}
	slices.SortFunc(out, func(a, b Outcome) int {
		return cmp.Or(cmp.Compare(opOrder[a.Op], opOrder[b.Op]), compareBool(a.Bot, b.Bot),
			cmp.Compare(a.Status, b.Status), cmp.Compare(a.Code, b.Code))
	})
	return lat, out
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}
