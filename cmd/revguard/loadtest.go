package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/loadtest"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// LoadtestCommand implements `revguard loadtest`: a simulated flash sale against a
// running server (--target) or, with no target, against an embedded one started in a
// temporary folder with a fake bot-check verifier, then torn down.
type LoadtestCommand struct {
	Getenv func(string) string
	Stdout io.Writer // the report
	Stderr io.Writer // notices, and live progress when it is a terminal
}

// loadtestConfig is the parsed command line.
type loadtestConfig struct {
	scenario       loadtest.Scenario
	targets        []string
	adminToken     string
	json           bool
	fakeVerifier   string // loopback address for a fake verifier a target can use
	token          string // a fixed bot-check token for humans
	wait           time.Duration
	ledgerWait     time.Duration
	requestTimeout time.Duration
	pipeline       int // connections per target to pipeline over; 0: none
	baselines      []string
	baselineOnly   bool
	redisURL       string
	postgresURL    string
	dataDir        string // parent of the embedded server's temporary folder
	botsSet        bool   // --bots was given
	waitingRoom    bool   // the fairness experiment instead of the sale
	roomRate       int64
	roomPreQueue   time.Duration
	cpuProfile     string // file for a CPU profile of the whole run
}

// targetList is a repeatable flag that also takes comma-separated lists.
type targetList []string

func (t *targetList) String() string { return strings.Join(*t, ",") }

func (t *targetList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*t = append(*t, strings.TrimRight(s, "/"))
		}
	}
	return nil
}

// flagSet returns the command's flags, writing into c, with defaults from the scenario
// and the environment.
func (lc *LoadtestCommand) flagSet(c *loadtestConfig) *flag.FlagSet {
	getenv := lc.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	s := &c.scenario
	*s = loadtest.DefaultScenario()
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var((*targetList)(&c.targets), "target", "base URL of a running server; repeat or give a comma list for round-robin (none: start an embedded server)")
	fs.StringVar(&c.adminToken, "admin-token", getenv("REVGUARD_ADMIN_TOKEN"), "the target's admin token (env REVGUARD_ADMIN_TOKEN)")
	fs.IntVar(&s.Customers, "customers", s.Customers, "customers in the crowd, bots included")
	fs.Int64Var(&s.Stock, "stock", s.Stock, "units for sale")
	fs.Int64Var(&s.Limit, "limit", s.Limit, "per-customer limit")
	fs.Int64Var(&s.HoldSeconds, "hold-seconds", s.HoldSeconds, "how long a hold lasts")
	fs.Int64Var(&s.Quantity, "quantity", s.Quantity, "units per reservation")
	fs.IntVar(&s.OverLimit, "over-limit", s.OverLimit, "attempts each buyer fires, at once, beyond its limit (a double click)")
	fs.Func("arrival", "burst (all at the opening), ramp (over --ramp) or steady (--rate per second) (default ramp)", func(v string) error {
		a, err := loadtest.ParseArrival(v)
		s.Arrival = a
		return err
	})
	fs.DurationVar(&s.Ramp, "ramp", s.Ramp, "spread of the arrivals with --arrival ramp")
	fs.Float64Var(&s.Rate, "rate", s.Rate, "customers per second with --arrival steady")
	fs.Func("bots", fmt.Sprintf("share of customers that are bots, sending bad or replayed tokens (default %g)", s.Bots), func(v string) error {
		c.botsSet = true
		return parseFloat(v, &s.Bots)
	})
	fs.Float64Var(&s.Confirm, "confirm", s.Confirm, "share of holds confirmed")
	fs.DurationVar(&s.ConfirmDelay, "confirm-delay", s.ConfirmDelay, "from a hold to its confirm")
	fs.Float64Var(&s.Release, "release", s.Release, "share of holds released")
	fs.DurationVar(&s.ReleaseDelay, "release-delay", s.ReleaseDelay, "from a hold to its release")
	fs.DurationVar(&s.Duration, "duration", s.Duration, "cap on the sale; later steps are skipped")
	fs.IntVar(&s.Connections, "connections", s.Connections, "reservation attempts in flight at most (confirms and releases get a quarter more)")
	fs.StringVar(&s.SKU, "sku", "", "SKU to sell (default a fresh loadtest-<random>; it must have nothing held or sold)")
	fs.Int64Var(&s.Seed, "seed", 0, "seed of the crowd's choices (default random; the report shows it)")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.Bool("drop", false, "the headline drop: 1,000,000 buyers for 10,000 units, all at the opening instant, one click each, 256 connections "+
		"(sessions are issued before the drop opens and reported apart); other flags change it")
	fs.IntVar(&c.pipeline, "pipeline", 0, "pipeline each target's requests over this many connections (HTTP/1.1 pipelining, as a proxy multiplexing its clients would); 0: one connection per request in flight")
	fs.StringVar(&c.fakeVerifier, "fake-verifier", "", "with --target: run a fake Turnstile verifier on this loopback address (e.g. 127.0.0.1:8099), print the serve flags that point a server at it, and wait for the target")
	fs.StringVar(&c.token, "turnstile-token", "", "with --target: the bot-check token every human sends (e.g. XXXX.DUMMY.TOKEN.XXXX for a server on Cloudflare's always-pass test secret)")
	fs.DurationVar(&c.wait, "wait", time.Minute, "how long to wait for the targets' /readyz")
	fs.DurationVar(&c.ledgerWait, "ledger-wait", 30*time.Second, "how long the ledger may take to catch up")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 10*time.Second, "timeout of one request")
	fs.Func("baseline", "also drive what a shop would otherwise use, with the same scenario: redis, postgres, "+
		"and distributed (the same sale on a revguard node in distributed mode, in a namespace and schema of its own), comma-separated", func(v string) error {
		for b := range strings.SplitSeq(v, ",") {
			if b != "redis" && b != "postgres" && b != "distributed" {
				return fmt.Errorf("unknown baseline %q: want redis, postgres or distributed", b)
			}
			c.baselines = append(c.baselines, b)
		}
		return nil
	})
	fs.BoolVar(&c.waitingRoom, "waiting-room", false, "instead of the sale, the fairness experiment: the crowd (--customers, --stock) in four groups "+
		"whose requests are delayed by 0, 50, 150 and 300 ms, once through a waiting room and once without; the report shows each group's share of the stock")
	fs.Int64Var(&c.roomRate, "room-rate", 200, "with --waiting-room: customers admitted a second")
	fs.DurationVar(&c.roomPreQueue, "room-pre-queue", 5*time.Second, "with --waiting-room: how long before the opening the crowd arrives")
	fs.BoolVar(&c.baselineOnly, "baseline-only", false, "run the baselines without the sale")
	fs.StringVar(&c.redisURL, "redis-url", getenv("REVGUARD_TEST_REDIS_URL"), "Redis of the redis and distributed baselines (env REVGUARD_TEST_REDIS_URL)")
	fs.StringVar(&c.postgresURL, "postgres-url", getenv("REVGUARD_TEST_POSTGRES_URL"), "PostgreSQL of the postgres and distributed baselines (env REVGUARD_TEST_POSTGRES_URL)")
	fs.StringVar(&c.dataDir, "data-dir", "", "where the embedded server's temporary folder goes (default the system's temporary directory)")
	fs.StringVar(&c.cpuProfile, "cpu-profile", "", "write a CPU profile of this process (the load generator, and the embedded server without --target) to this file, for go tool pprof")
	return fs
}

func parseFloat(v string, dst *float64) error {
	var f float64
	if _, err := fmt.Sscan(v, &f); err != nil {
		return fmt.Errorf("not a number: %q", v)
	}
	*dst = f
	return nil
}

// dropScenario is the scenario of --drop, the headline drop: the defaults below, on
// which the other flags then apply.
func dropScenario(s *loadtest.Scenario) {
	s.Customers = 1_000_000
	s.Stock = 10_000
	s.Arrival = loadtest.ArrivalBurst
	s.OverLimit = 0
	s.HoldSeconds = 600
	s.Connections = 256
	s.Duration = 2 * time.Minute
}

// parse reads args into a checked configuration.
func (lc *LoadtestCommand) parse(args []string) (loadtestConfig, error) {
	// --drop sets defaults that the other flags override, wherever it stands: a first
	// parse, into a configuration then dropped (the list flags append), finds it.
	var probe loadtestConfig
	pfs := lc.flagSet(&probe)
	drop := pfs.Parse(args) == nil && pfs.Lookup("drop").Value.String() == "true"
	var c loadtestConfig
	fs := lc.flagSet(&c)
	if drop {
		dropScenario(&c.scenario)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageErrorf("loadtest: %s", flagError(err))
	}
	if fs.NArg() > 0 {
		return c, usageErrorf("loadtest: unexpected argument %q", fs.Arg(0))
	}
	if err := c.scenario.Validate(); err != nil {
		return c, usageErrorf("loadtest: %v", err)
	}
	for _, t := range c.targets {
		if !strings.HasPrefix(t, "http://") && !strings.HasPrefix(t, "https://") {
			return c, usageErrorf("loadtest: --target %q: want a base URL such as http://127.0.0.1:8080", t)
		}
	}
	switch {
	case len(c.targets) > 0 && c.adminToken == "" && !c.baselineOnly:
		return c, usageErrorf("loadtest: --target needs --admin-token (or REVGUARD_ADMIN_TOKEN)")
	case len(c.targets) == 0 && (c.fakeVerifier != "" || c.token != ""):
		return c, usageErrorf("loadtest: --fake-verifier and --turnstile-token are for --target; the embedded server has its own verifier")
	case c.fakeVerifier != "" && c.token != "":
		return c, usageErrorf("loadtest: give --fake-verifier or --turnstile-token, not both")
	case c.waitingRoom && (c.roomRate < 1 || c.roomRate > revguard.MaxAdmitPerSecond || c.roomPreQueue <= 0 || len(c.baselines) > 0):
		return c, usageErrorf("loadtest: --waiting-room needs --room-rate 1 to %d and a positive --room-pre-queue, and no --baseline", revguard.MaxAdmitPerSecond)
	case c.baselineOnly && len(c.baselines) == 0:
		return c, usageErrorf("loadtest: --baseline-only needs --baseline")
	case c.pipeline < 0:
		return c, usageErrorf("loadtest: --pipeline must be 0 or more")
	case c.wait <= 0 || c.ledgerWait <= 0 || c.requestTimeout <= 0:
		return c, usageErrorf("loadtest: --wait, --ledger-wait and --request-timeout must be positive")
	}
	if c.fakeVerifier != "" {
		if err := loopbackAddr(c.fakeVerifier); err != nil {
			return c, usageErrorf("loadtest: --fake-verifier: %v", err)
		}
	}
	for _, b := range c.baselines {
		if b == "redis" && c.redisURL == "" || b == "postgres" && c.postgresURL == "" {
			return c, usageErrorf("loadtest: --baseline %s needs --%s-url", b, b)
		}
		if b == "distributed" && (c.redisURL == "" || c.postgresURL == "") {
			return c, usageErrorf("loadtest: --baseline distributed needs --redis-url and --postgres-url")
		}
	}
	return c, nil
}

// loopbackAddr accepts host:port with a loopback host only.
func loopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}

// Usage returns the help text of `revguard loadtest`.
func (lc *LoadtestCommand) Usage() string {
	var c loadtestConfig
	fs := lc.flagSet(&c)
	var b strings.Builder
	b.WriteString(`Usage: revguard loadtest [flags]

Runs a simulated flash sale and checks its outcome: no unit sold twice, no customer over
the limit, no bot admitted, the ledger equal to the acknowledged reservations. With no
--target it starts an embedded server in a temporary folder, with a fake bot-check
verifier, and removes it after. The exit status is 1 when a check fails.

  revguard loadtest                                  # a sale of about 20 seconds
  revguard loadtest --arrival burst --customers 50000 --stock 5000 --baseline redis,postgres
  revguard loadtest --target http://127.0.0.1:8080 --admin-token T --fake-verifier 127.0.0.1:8099

Flags:
`)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// Run parses args, runs the sale (and the baselines), prints the report, and fails when
// a check failed.
func (lc *LoadtestCommand) Run(ctx context.Context, args []string) error {
	c, err := lc.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(lc.Stdout, lc.Usage())
		return err
	}
	if err != nil {
		return err
	}
	var progress io.Writer
	if f, ok := lc.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		progress = f
	}
	if c.cpuProfile != "" {
		stop, err := startCPUProfile(c.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if c.waitingRoom {
		return lc.runWaitingRoom(ctx, c)
	}
	rep := &loadtest.Report{Scenario: c.scenario}
	if !c.baselineOnly {
		if rep, err = lc.sale(ctx, c, progress); err != nil {
			return err
		}
		if c.scenario.Seed == 0 { // the baselines get the sale's arrivals
			c.scenario.Seed = rep.Scenario.Seed
		}
	}
	for _, name := range c.baselines {
		b, err := runBaseline(ctx, name, c, progress)
		if err != nil {
			return err
		}
		rep.Baselines = append(rep.Baselines, b)
	}
	if c.json {
		err = rep.WriteJSON(lc.Stdout)
	} else {
		err = rep.WriteText(lc.Stdout)
	}
	if err != nil {
		return fmt.Errorf("loadtest: write report: %w", err)
	}
	return rep.Err()
}

// sale runs the sale against the targets, or against an embedded server.
func (lc *LoadtestCommand) sale(ctx context.Context, c loadtestConfig, progress io.Writer) (*loadtest.Report, error) {
	var tokens loadtest.TokenSource
	mode := "target"
	targets, admin := c.targets, c.adminToken
	s := c.scenario
	switch {
	case len(targets) == 0:
		srv, err := startEmbedded(ctx, c.dataDir, lc.Stderr)
		if err != nil {
			return nil, err
		}
		defer srv.Close()
		targets, admin, tokens, mode = []string{srv.main.URL()}, srv.main.Config.AdminToken, srv.verifier, "embedded"
		fmt.Fprintf(lc.Stderr, "loadtest: embedded server on %s (data in %s), bot check against a fake verifier\n", srv.main.URL(), srv.dir)
	case c.fakeVerifier != "":
		v, stop, err := serveVerifier(c.fakeVerifier)
		if err != nil {
			return nil, err
		}
		defer stop()
		tokens = v
		// The whole command for the first target: its address, the admin token given
		// here, and no per-IP limit (the whole crowd comes from this one address).
		addr := strings.TrimPrefix(strings.TrimPrefix(c.targets[0], "http://"), "https://")
		fmt.Fprintf(lc.Stderr, "loadtest: fake verifier on %s; start the target with:\n  revguard serve --addr %s --admin-token %s --rate-limit-ip off --turnstile-url http://%s%s --turnstile-secret %s\n",
			c.fakeVerifier, addr, c.adminToken, c.fakeVerifier, turnstiletest.Path, v.Secret)
	case c.token != "":
		tokens = fixedToken(c.token)
		if !c.botsSet {
			s.Bots = 0
			fmt.Fprintln(lc.Stderr, "loadtest: no bots: every token is valid with --turnstile-token (set --bots to try anyway)")
		}
	default:
		if !c.botsSet {
			s.Bots = 0
			fmt.Fprintln(lc.Stderr, "loadtest: no bots and no bot-check tokens: use --fake-verifier to check the target's bot check")
		}
	}
	if mode == "target" {
		// With --fake-verifier the target must be started (again) with the flags
		// printed above: one that answers with its bot check off is not it yet.
		if err := waitReady(ctx, targets, c.wait, c.fakeVerifier != "", lc.Stderr); err != nil {
			return nil, err
		}
	}
	r := loadtest.NewRunner(s, admin, targets...)
	r.Tokens = tokens
	r.Progress = progress
	r.LedgerWait = c.ledgerWait
	r.RequestTimeout = c.requestTimeout
	r.Pipeline = c.pipeline
	rep, err := r.Run(ctx)
	if err != nil {
		return nil, err
	}
	rep.Mode = mode
	return rep, nil
}

// fixedToken hands every human the same token.
type fixedToken string

func (t fixedToken) Token() string { return string(t) }

// embedded is a server started for one load test, with its fake verifier.
type embedded struct {
	main     *Main
	verifier *turnstiletest.Server
	dir      string
}

// startEmbedded starts a fake verifier on 127.0.0.1 and a server on 127.0.0.1:0 with its
// data in a fresh temporary folder under parent ("" for the system's), its bot check
// pointed at the verifier, the per-IP rate limit off (every simulated customer comes
// from 127.0.0.1) and the per-customer one at its default. The server logs errors to
// log.
func startEmbedded(ctx context.Context, parent string, log io.Writer) (*embedded, error) {
	dir, err := os.MkdirTemp(parent, "revguard-loadtest-")
	if err != nil {
		return nil, fmt.Errorf("loadtest: embedded server: %w", err)
	}
	e := &embedded{dir: dir, verifier: turnstiletest.New()}
	if err := e.verifier.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("loadtest: fake verifier: %w", err)
	}
	m := newLoadtestMain(e.verifier, log)
	m.Config.DataDir = dir
	if err := m.Open(ctx); err != nil {
		e.verifier.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("loadtest: embedded server: %w", err)
	}
	e.main = m
	return e, nil
}

// newLoadtestMain returns a Main for a load test on 127.0.0.1:0, with a fresh admin
// token, its bot check pointed at verifier, the per-IP rate limit off (every simulated
// customer comes from 127.0.0.1) and the per-customer one at its default, logging
// errors to log.
func newLoadtestMain(verifier *turnstiletest.Server, log io.Writer) *Main {
	m := NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.AdminToken = revguard.NewSessionToken()
	m.Config.TurnstileSecret = verifier.Secret
	m.Config.TurnstileURL = verifier.URL()
	m.Config.RateLimitIP = revguard.Rate{}
	m.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelError}))
	return m
}

// Close stops the server and the verifier and removes the data.
func (e *embedded) Close() error {
	err := e.main.Close()
	e.verifier.Close()
	return errors.Join(err, os.RemoveAll(e.dir))
}

// serveVerifier serves a fake verifier on addr until stop is called.
func serveVerifier(addr string) (*turnstiletest.Server, func(), error) {
	v := turnstiletest.New()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("loadtest: fake verifier: %w", err)
	}
	srv := &http.Server{Handler: v, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	// The verifier serves until stop closes it.
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return v, func() {
		v.Close() // returns any hanging request
		srv.Close()
		<-done
	}, nil
}

// waitReady polls each target's /readyz until it answers 200, for up to wait; with
// botCheck, until it also says that its bot check is on.
func waitReady(ctx context.Context, targets []string, wait time.Duration, botCheck bool, notices io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for _, t := range targets {
		for said, saidOff := false, false; ; {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, t+"/readyz", nil)
			if err != nil {
				return usageErrorf("loadtest: --target %q: %v", t, err)
			}
			resp, err := client.Do(req)
			off := false
			if err == nil {
				var ready struct {
					BotCheck string `json:"bot_check"`
				}
				derr := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ready)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				// Judged on a ready answer only: a proxy's 502 says nothing of it.
				off = botCheck && resp.StatusCode == http.StatusOK && (derr != nil || ready.BotCheck != "on")
				if resp.StatusCode == http.StatusOK && !off {
					break
				}
			}
			switch {
			case off && !saidOff:
				fmt.Fprintf(notices, "loadtest: %s answers with its bot check off: waiting up to %s for it to be started with the flags above\n", t, wait)
				said, saidOff = true, true
			case !said:
				fmt.Fprintf(notices, "loadtest: waiting up to %s for %s/readyz\n", wait, t)
				said = true
			}
			select {
			case <-ctx.Done():
				if off {
					return fmt.Errorf("loadtest: %s still has its bot check off: start it with the flags above", t)
				}
				return fmt.Errorf("loadtest: %s is not ready: %v", t, context.Cause(ctx))
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// runBaseline drives one baseline store with the scenario.
func runBaseline(ctx context.Context, name string, c loadtestConfig, progress io.Writer) (*loadtest.BaselineReport, error) {
	var store loadtest.BaselineStore
	switch name {
	case "redis":
		r, err := loadtest.NewRedisBaseline(c.redisURL, c.scenario.Connections)
		if err != nil {
			return nil, err
		}
		store = r
	case "postgres":
		store = loadtest.NewPostgresBaseline(c.postgresURL, c.scenario.Connections)
	case "distributed":
		return runDistributedBaseline(ctx, c, progress)
	}
	b := &loadtest.BaselineRunner{Scenario: c.scenario, Store: store, Progress: progress}
	return b.Run(ctx)
}

// startCPUProfile profiles the process's CPU into the file path until the returned
// function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: --cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("loadtest: --cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
