package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TokenSource hands out bot-check tokens that the target's verifier accepts, each once:
// turnstiletest.Server is one.
type TokenSource interface {
	Token() string
}

// Runner plays a Scenario against one or several targets. Set the exported fields, then
// call Run once.
type Runner struct {
	Scenario   Scenario
	Targets    []string // base URLs, e.g. http://127.0.0.1:8080; requests go round-robin
	AdminToken string

	// Tokens gives the humans their bot-check tokens; nil sends none (the target's bot
	// check must be off, and bots will then be admitted). Bots always send bad or
	// replayed tokens.
	Tokens TokenSource

	Client *http.Client // nil: fasthttp for http:// targets, net/http for https://

	// Pipeline, when positive, sends each http:// target's requests pipelined over this
	// many connections (HTTP/1.1 pipelining) instead of one connection per request in
	// flight: far fewer system calls per request for the generator and the server, as
	// behind a proxy that multiplexes its clients onto a few upstream connections.
	Pipeline       int
	RequestTimeout time.Duration // per request; default 10 s
	Retries        int           // of a request whose outcome was unknown or refused for load; default 3
	LedgerWait     time.Duration // how long the ledger may take to catch up; default 30 s
	SampleEvery    time.Duration // GET of the SKU during the sale, and progress; default 250 ms

	// Progress receives a live status line (with carriage returns) during the run: give
	// it a terminal, or nil for nothing.
	Progress io.Writer
	Logger   *slog.Logger
	Now      func() time.Time
}

// NewRunner returns a Runner for s against targets, with the defaults set.
func NewRunner(s Scenario, adminToken string, targets ...string) *Runner {
	return &Runner{
		Scenario: s, Targets: targets, AdminToken: adminToken,
		RequestTimeout: 10 * time.Second, Retries: 3, LedgerWait: 30 * time.Second,
		SampleEvery: 250 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler), Now: time.Now,
	}
}

// plan is what a human does with a hold.
type plan uint8

const (
	planAbandon plan = iota // let it expire
	planConfirm
	planRelease
)

// customer is one simulated buyer or bot.
type customer struct {
	id      string
	bot     bool
	replay  bool // a bot that replays spent tokens rather than inventing them
	session string
	arrival time.Duration // from the opening; negative: never arrives
	plans   []plan        // one per attempt
	tokens  []string      // a human's bot-check tokens solved before a burst, one per attempt

	// Set when the customer arrives: its attempts, and how many of them still wait for
	// their final answer.
	attempts []*attempt
	pending  atomic.Int32
}

// attempt is one reservation a customer fired, with its final answer.
type attempt struct {
	cust       *customer
	qty        int64
	replayed   bool      // a bot attempt that carried a spent token
	lo         time.Time // lower bound of the server's clock when the last try was sent
	hi         time.Time // upper bound of the server's clock when its answer was sent
	status     int
	code       string
	unresolved bool // the outcome could not be learned: it may hold units
	hold       *hold
}

// hold is an acknowledged reservation (a 201) and what became of it, as the customer
// learned it. Only the customer's goroutine writes it; the checks read it after the sale.
type hold struct {
	res       reservationJSON
	cust      *customer
	status    string    // last known: held, confirmed, released, expired
	endedAt   time.Time // released_at of a release
	tried     plan      // planConfirm or planRelease when one was sent
	triedLo   time.Time // lower bound of the server's clock when it was sent
	unknown   bool      // the confirm or release was sent but its outcome is unknown
	anomalies []string
}

// sale is the state of one run.
type sale struct {
	r          *Runner
	s          Scenario
	c          *client
	rec        *recorder
	queue      chan *job      // the next tries of reservation attempts, for the workers
	followSem  chan struct{}  // one slot per confirm or release in flight
	unanswered sync.WaitGroup // reservation attempts without their final answer yet
	follows    sync.WaitGroup // confirms and releases, from their delay to their answer
	start      time.Time
	solved     time.Time // when the humans of a burst solved their challenges
	deadline   time.Time
	runID      string

	spentOnce sync.Once
	spentCh   chan struct{} // closed when the first token is known spent

	mu       sync.Mutex // guards everything below
	attempts []*attempt
	holds    []*hold
	spent    []string // bot-check tokens certainly spent by a human's 201
	rng      *mrand.Rand
	samples  int
	badSamp  []string
	last     skuJSON // the latest sample

	ledger map[string]string // reservation id → status, from the ledger once it matched
}

// Run plays the scenario: it creates the SKU and the sessions, runs the sale, waits for
// the ledger and computes the checks. It fails only when the sale could not be set up
// or ctx ended; failed checks are in the report (Report.Failed).
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	s := r.Scenario
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	if len(r.Targets) == 0 {
		return nil, errors.New("loadtest: no target")
	}
	targets := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		targets[i] = strings.TrimRight(t, "/")
	}
	if s.Seed == 0 {
		s.Seed = time.Now().UnixNano() & math.MaxInt32
	}
	runID := randomHex(4)
	if s.SKU == "" {
		s.SKU = "loadtest-" + runID
	}
	now := r.Now
	if now == nil {
		now = time.Now
	}
	c := &client{targets: targets, admin: r.AdminToken, http: r.Client, timeout: r.RequestTimeout, pipeline: r.Pipeline, now: now}
	defer c.useTransport(poolConns(s.Connections))()
	sl := &sale{
		r: r, s: s, runID: runID, rec: newRecorder(now), c: c,
		queue:     make(chan *job, s.Connections),
		followSem: make(chan struct{}, followConns(s.Connections)),
		spentCh:   make(chan struct{}),
		rng:       mrand.New(mrand.NewPCG(uint64(s.Seed), 0x5eed)),
	}
	rep := &Report{Scenario: s, Targets: targets, Started: now().UTC()}

	if err := sl.setupSKU(ctx); err != nil {
		return nil, err
	}
	customers := sl.customers()
	t0 := now()
	if err := sl.createSessions(ctx, customers); err != nil {
		return nil, err
	}
	rep.SetupSeconds = now().Sub(t0).Seconds()
	sl.solveChallenges(customers)

	sl.run(ctx, customers)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loadtest: sale interrupted: %w", err)
	}
	rep.SaleSeconds = now().Sub(sl.start).Seconds()
	sl.finish(ctx, rep)
	return rep, nil
}

// followConns is how many confirms and releases may be in flight on top of the
// reservation attempts: buyers who already hold units do not queue behind the crowd's
// first clicks in the load generator (they may still queue in the server).
func followConns(conns int) int { return max(2, conns/4) }

// poolConns is how many keep-alive connections a target gets for conns reservation
// attempts in flight: those, plus the confirms and releases and the sampler's reads.
func poolConns(conns int) int { return conns + followConns(conns) + 4 }

// newTransport returns a keep-alive transport of n connections per target.
func newTransport(n int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		MaxConnsPerHost:     n,
		IdleConnTimeout:     90 * time.Second,
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// setupSKU creates the SKU and makes sure that nothing is held or sold yet: the checks
// count every unit as this run's.
func (sl *sale) setupSKU(ctx context.Context) error {
	if _, _, err := sl.c.putSKU(ctx, sl.s); err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	sku, _, err := sl.c.getSKU(ctx, sl.s.SKU)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if sku.Held != 0 || sku.Sold != 0 {
		return fmt.Errorf("loadtest: sku %s already has %d units held and %d sold: use a fresh --sku", sku.SKU, sku.Held, sku.Sold)
	}
	if sku.Stock != sl.s.Stock || sku.Available != sl.s.Stock {
		return fmt.Errorf("loadtest: sku %s has stock %d and %d available after it was set to %d", sku.SKU, sku.Stock, sku.Available, sl.s.Stock)
	}
	return nil
}

// customers draws the crowd: who is a bot, when each arrives, and what each human does
// with each hold.
func (sl *sale) customers() []*customer {
	s := sl.s
	cs := make([]*customer, s.Customers)
	at := s.arrivals(s.Customers)
	for i := range cs {
		c := &customer{id: fmt.Sprintf("lt-%s-%07d", sl.runID, i), arrival: -1}
		if i < len(at) {
			c.arrival = at[i]
		}
		cs[i] = c
	}
	nBots := int(math.Round(s.Bots * float64(s.Customers)))
	for k, i := range sl.rng.Perm(s.Customers)[:nBots] {
		cs[i].bot, cs[i].replay = true, k%2 == 1
	}
	for _, c := range cs {
		if c.bot {
			c.plans = []plan{planAbandon}
			continue
		}
		c.plans = make([]plan, s.Attempts())
		for j := range c.plans {
			switch u := sl.rng.Float64(); {
			case u < s.Confirm:
				c.plans[j] = planConfirm
			case u < s.Confirm+s.Release:
				c.plans[j] = planRelease
			}
		}
	}
	return cs
}

// createSessions issues a session per customer, Connections at a time.
func (sl *sale) createSessions(ctx context.Context, cs []*customer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	next := make(chan *customer)
	done := make(chan struct{})
	// The progress goroutine is started here and exits when done is closed.
	var created int64
	var cmu sync.Mutex
	go func() {
		t := time.NewTicker(sl.every())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				cmu.Lock()
				n := created
				cmu.Unlock()
				sl.progressf("sessions %d/%d", n, len(cs))
			}
		}
	}()
	// Each worker is started here and exits when next is closed or ctx is cancelled.
	for range sl.s.Connections {
		wg.Go(func() {
			for c := range next {
				tok, err := sl.session(ctx, c.id)
				if err != nil {
					cancel(err)
					return
				}
				c.session = tok
				cmu.Lock()
				created++
				cmu.Unlock()
			}
		})
	}
feed:
	for _, c := range cs {
		select {
		case next <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(done)
	sl.progressEnd()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("loadtest: sessions: %w", err)
	}
	return nil
}

// session creates one session, waiting out rate limits.
func (sl *sale) session(ctx context.Context, id string) (string, error) {
	for try := 0; ; try++ {
		t0 := sl.c.now()
		tok, a, err := sl.c.createSession(ctx, id)
		sl.rec.record(opSession, false, a, sl.c.now().Sub(t0))
		if err == nil {
			return tok, nil
		}
		if try >= 10 || (a.status != http.StatusTooManyRequests && a.status != http.StatusServiceUnavailable && !a.failed()) {
			return "", err
		}
		if !sleepCtx(ctx, backoff(a, try)) {
			return "", ctx.Err()
		}
	}
}

// backoff is how long to wait before retrying after a: its Retry-After, or a short
// growing pause.
func backoff(a answer, try int) time.Duration {
	if a.retryAfter > 0 {
		return min(a.retryAfter, 5*time.Second)
	}
	return time.Duration(25<<min(try, 6)) * time.Millisecond
}

// sleepCtx sleeps d, and reports false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (sl *sale) every() time.Duration {
	if sl.r.SampleEvery > 0 {
		return sl.r.SampleEvery
	}
	return 250 * time.Millisecond
}

// progressf rewrites the status line.
func (sl *sale) progressf(format string, args ...any) {
	if sl.r.Progress != nil {
		fmt.Fprintf(sl.r.Progress, "\r\x1b[K"+format, args...)
	}
}

// progressEnd ends the status line.
func (sl *sale) progressEnd() {
	if sl.r.Progress != nil {
		fmt.Fprint(sl.r.Progress, "\r\x1b[K")
	}
}
