package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/internal/tick"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/sqlite"
	"github.com/revenueguard/revguard/turnstile"
	"github.com/revenueguard/revguard/webhook"
)

// The data directory's layout, fixed so that export and verify find the same files.
const (
	journalDirName   = "journal"     // journal segments
	snapshotsDirName = "snapshots"   // inventory snapshots
	dbFileName       = "revguard.db" // SQLite: ledger and sessions
)

// Timings of the server's background work and HTTP limits.
const (
	sessionPurgeInterval = time.Minute
	ledgerDrainTimeout   = 10 * time.Second // at Close, how long the ledger writer may catch up
	readHeaderTimeout    = 5 * time.Second
	readTimeout          = 15 * time.Second
	writeTimeout         = 30 * time.Second
	idleTimeout          = 2 * time.Minute
	minAdminTokenLen     = 16 // shorter admin tokens are accepted with a warning
	dashboardLinkTTL     = time.Hour
	changeRetention      = 7 * 24 * time.Hour // longer than the webhooks' retries (27.6 hours)
	changePruneInterval  = time.Hour
)

// ServeCommand implements `revguard serve`.
type ServeCommand struct {
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer // the log, and the operator's notices: generated token, warnings, address
}

// Run parses the configuration, opens the server and serves until ctx ends (SIGTERM or
// SIGINT), then shuts down gracefully and returns nil. A listener failure ends it with
// an error.
func (c *ServeCommand) Run(ctx context.Context, args []string) error {
	cfg, err := parseServeConfig(args, c.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(c.Stdout, c.Usage())
		return err
	}
	if err != nil {
		return err
	}

	m := NewMain()
	m.Config = cfg
	m.Logger = slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	generated := cfg.AdminToken == ""
	if err := m.Open(ctx); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil // a signal during start-up: nothing was served, nothing is lost
		}
		return err
	}
	if generated {
		fmt.Fprintf(c.Stderr, "revguard: admin token (generated; shown only this once, set --admin-token to choose one): %s\n", m.Config.AdminToken)
	}
	if m.Config.TurnstileSecret == "" {
		fmt.Fprintf(c.Stderr, "revguard: WARNING: %s\n", botCheckOffWarning)
	}
	if m.Fleet != nil {
		for _, w := range m.Fleet.Warnings {
			fmt.Fprintf(c.Stderr, "revguard: WARNING: ACKNOWLEDGED HOLDS CAN BE LOST: %s\n", w)
		}
		if m.Config.DataDir != DefaultConfig().DataDir {
			fmt.Fprintf(c.Stderr, "revguard: note: --data-dir (REVGUARD_DATA_DIR) is not used in distributed mode: "+
				"the state lives in Redis (namespace %s) and PostgreSQL (schema %s)\n", m.Config.RedisNamespace, m.Config.PostgresSchema)
		}
	}
	// Before the listening line, which tells tests and scripts that start-up is over.
	fmt.Fprintf(c.Stderr, "revguard: live dashboard (this link works for %s; then enter the admin token): %s\n",
		dashboardLinkTTL, m.DashboardLink(dashboardLinkTTL))
	fmt.Fprintf(c.Stderr, "revguard: listening on %s\n", m.URL())
	if m.Config.Example {
		fmt.Fprintf(c.Stderr, "revguard: storefront example (demo only, it issues sessions to anyone) at %s/example/\n", m.URL())
	}

	var serveErr error
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down", "reason", context.Cause(ctx))
	case serveErr = <-m.Done():
		m.Logger.Error("server failed", "err", serveErr)
	case <-m.JournalFailed():
		// Every change is refused (503) from now on, and the memory may hold changes
		// the disk does not: a restart recovers from the disk. Exit non-zero, after a
		// graceful shutdown, so that a supervisor restarts the server.
		serveErr = fmt.Errorf("the journal failed, so the server stops for a restart that recovers from the disk: %w", m.Journal.Err())
		m.Logger.Error("journal failed: shutting down; restart the server (it recovers every acknowledged change from the journal)", "err", m.Journal.Err())
	}
	if err := m.Close(); err != nil {
		return errors.Join(serveErr, err)
	}
	return serveErr
}

// Usage returns the help text of `revguard serve`: every flag with its environment
// variable and default.
func (c *ServeCommand) Usage() string {
	var b strings.Builder
	b.WriteString(`Usage: revguard serve [flags]

Runs the Revenue Guard server. In embedded mode (the default) the reservation
journal, inventory snapshots and the SQLite ledger and sessions live under --data-dir.
In distributed mode (--redis-url and --postgres-url, both) the node keeps no state of
its own: the SKUs, reservations, sessions and rate limits live in Redis, the ledger in
PostgreSQL, and any number of nodes started with the same URLs and --admin-token serve
the same sale behind a load balancer. SIGTERM or SIGINT shut it down gracefully (stop
accepting, finish in-flight requests, flush, exit 0). A journal that cannot write (a
full disk) shuts it down the same way with exit status 1, for a supervisor to restart
it: the start recovers every acknowledged change.

Flags (each has an environment variable; the flag wins):
`)
	writeOptions(&b, defaultOptions())
	return b.String()
}

// botCheckOffWarning is said at start and in /readyz's body when no Turnstile secret is
// configured.
const botCheckOffWarning = "BOT CHECK IS OFF: no --turnstile-secret (REVGUARD_TURNSTILE_SECRET) is set, " +
	"so reservations are served without verifying that a human is behind them"

// Main is the server: it opens the stores in order, builds the HTTP server, and closes
// everything in reverse order (benbjohnson/wtf cmd/wtfd). The end-to-end tests and the
// load generator reuse it. Open decides the mode, once: embedded (Journal, Inventory,
// DB, Ledger, Sessions and Writer are set) or distributed (Fleet is set).
type Main struct {
	Config Config
	Logger *slog.Logger
	Now    func() time.Time

	// Set by Open in distributed mode.
	Fleet *Fleet

	// Set by Open; in distributed mode only BotChecker, Registry, API and HTTPServer.
	Journal   *journal.Journal
	Inventory *inproc.Inventory
	DB        *sqlite.DB
	Ledger    *sqlite.Ledger
	Sessions  *inproc.SessionCache
	Room      *inproc.WaitingRoom
	Writer    *revguard.LedgerWriter
	// The change log (event stream, webhooks) and its writer, the webhook endpoints
	// and their dispatcher.
	Changes      *sqlite.ChangeLog
	ChangeWriter *revguard.ChangeWriter
	Webhooks     *sqlite.Webhooks
	Dispatcher   *webhook.Dispatcher
	BotChecker   *turnstile.BotChecker // nil when the bot check is off
	Registry     *prometheus.Registry
	API          *httpapi.Server
	HTTPServer   *httpapi.HTTPServer

	rawSessions *sqlite.Sessions
	// sessionsWarmed is closed when the warm-up at start has ended (embedded mode).
	sessionsWarmed chan struct{}
	ln             net.Listener
	debug          *http.Server // the profiles, on Config.DebugAddr; nil when off
	debugAddr      net.Addr
	ready          atomic.Bool

	// cancel stops the background goroutines (ledger writer, session purge); they are
	// tracked by wg. serveDone receives http.Server.Serve's error, unless it is the
	// ErrServerClosed of a shutdown. writerDone is closed when the ledger writer exits,
	// and writerErr then holds its error.
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	serveDone  chan error
	writerDone chan struct{}
	writerErr  error

	closeOnce sync.Once
	closeErr  error
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{
		Config:    DefaultConfig(),
		Logger:    slog.New(slog.DiscardHandler),
		Now:       time.Now,
		serveDone: make(chan error, 1),
	}
}

// Open opens, in order: the stores of the mode (openEmbedded or openDistributed), the
// bot check, the rate limiters, the metrics, the HTTP API and its listener. On failure
// it closes what it opened. A generated admin token is left in m.Config.AdminToken.
func (m *Main) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Close())
		}
	}()
	cfg := &m.Config
	if err := cfg.Validate(); err != nil {
		return usageErrorf("serve: %v", err)
	}
	log := m.Logger
	switch {
	case cfg.AdminToken == "":
		cfg.AdminToken = revguard.NewSessionToken()
	case len(cfg.AdminToken) < minAdminTokenLen:
		log.Warn("the admin token is shorter than 16 characters and may be guessed; use at least 32 random characters",
			"length", len(cfg.AdminToken))
	}
	// The addresses first: a port in use or an address not of this machine is told
	// before the stores are opened (a new data dir made, a recovery run). They are
	// bound again once the server is ready, so that nothing connects meanwhile; all
	// are held until each is tried, so that two flags on one port are told too.
	if err := tryListen(ctx, cfg.Addr, cfg.DebugAddr); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel

	m.Registry = prometheus.NewRegistry()
	met := newServerMetrics(m.Registry)

	// The only place that chooses the mode.
	var st stores
	if cfg.Distributed() {
		st, err = m.openDistributed(ctx, bg, met)
	} else {
		st, err = m.openEmbedded(ctx, bg, met)
	}
	if err != nil {
		return err
	}
	if rl, ok := st.room.(roomLister); ok {
		if m.Fleet != nil {
			rl = sampledRooms{m.Fleet} // a scrape never waits for Redis
		}
		m.Registry.MustRegister(roomCollector{rl})
	}

	var bot revguard.BotChecker
	if cfg.TurnstileSecret != "" {
		m.BotChecker = turnstile.NewBotChecker(cfg.TurnstileSecret)
		m.BotChecker.URL = cfg.TurnstileURL
		m.BotChecker.Hostname = cfg.TurnstileHostname
		m.BotChecker.Action = cfg.TurnstileAction
		m.BotChecker.Logger = log.With("component", "turnstile")
		m.BotChecker.Now = m.Now
		bot = m.BotChecker
	}

	m.API = httpapi.NewServer()
	m.API.Inventory = st.inventory
	m.API.Ledger = st.ledger
	m.API.Sessions = st.sessions
	m.API.WaitingRoom = st.room
	m.API.BotChecker = bot
	m.API.CustomerLimiter = st.newLimiter("customer", cfg.RateLimitCustomer)
	m.API.IPLimiter = st.newLimiter("ip", cfg.RateLimitIP)
	m.API.AdminToken = cfg.AdminToken
	m.API.TrustedProxies = cfg.TrustedProxies
	m.API.Registerer = m.Registry
	m.API.Gatherer = m.Registry
	m.API.Ready = m.Ready
	if bot == nil {
		m.API.BotCheckOff = botCheckOffWarning
	}
	m.API.Logger = log.With("component", "http")
	m.API.Now = m.Now
	if cfg.Example {
		m.API.Example = exampleOf(*cfg)
	}
	m.API.Changes = st.changes
	m.API.Webhooks = st.webhooks
	m.API.WebhooksChanged = st.kick
	m.API.Dashboard = st.dashboard

	m.HTTPServer = m.API.NewHTTPServer(httpapi.HTTPConfig{
		ReadTimeout:  readTimeout,
		WriteTimeout: writeTimeout,
		IdleTimeout:  idleTimeout,
		BaseContext:  bg,
		MaxConns:     maxConns(),
	})
	var lc net.ListenConfig
	m.ln, err = lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("serve: listen on %s: %w", cfg.Addr, err)
	}
	// Serve runs until Close shuts the server down; any other end is reported on Done.
	go func() {
		if err := m.HTTPServer.Serve(m.ln); err != nil {
			m.serveDone <- fmt.Errorf("serve: %w", err)
		}
	}()
	if cfg.DebugAddr != "" {
		if err := m.serveDebug(ctx, cfg.DebugAddr); err != nil {
			return err
		}
	}
	m.ready.Store(true)
	if m.Fleet != nil {
		m.startNodes(bg, m.ln.Addr().String())
	}
	where := []any{"mode", "embedded", "data_dir", cfg.DataDir}
	if cfg.Distributed() {
		where = []any{"mode", "distributed", "redis_namespace", cfg.RedisNamespace, "postgres_schema", cfg.PostgresSchema}
	}
	log.Info("serving", append(where, "addr", m.ln.Addr().String(), "max_connections", m.HTTPServer.MaxConns(),
		"bot_check", bot != nil, "version", versionString(version, readBuildInfo()))...)
	return nil
}

// stores are the implementations of the root interfaces that the API serves from, in
// either mode.
type stores struct {
	inventory revguard.Inventory
	ledger    revguard.Ledger
	sessions  revguard.Sessions
	room      revguard.WaitingRoom                                    // nil: no waiting rooms
	limiter   func(name string, r revguard.Rate) revguard.RateLimiter // r is never off

	// The change log, webhooks and dashboard feed; nil where the mode has none.
	changes   revguard.ChangeReader
	webhooks  revguard.Webhooks
	kick      func()
	dashboard *httpapi.Dashboard
}

// newLimiter returns the rate limiter name of rate r, or nil (no limit) when r is off.
func (st stores) newLimiter(name string, r revguard.Rate) revguard.RateLimiter {
	if r.Off() {
		return nil
	}
	return st.limiter(name, r)
}

// openEmbedded opens the embedded mode's stores in order: the data directory, the
// journal, the inventory (recovery: snapshot then journal replay), the SQLite ledger
// and sessions, the session cache; then it starts the ledger writer and the session
// purge loop on bg, tracked by m.wg.
func (m *Main) openEmbedded(ctx context.Context, bg context.Context, met *serverMetrics) (stores, error) {
	cfg := &m.Config
	log := m.Logger
	journalDir := filepath.Join(cfg.DataDir, journalDirName)
	snapshotsDir := filepath.Join(cfg.DataDir, snapshotsDirName)
	for _, dir := range []string{cfg.DataDir, journalDir, snapshotsDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return stores{}, fmt.Errorf("serve: create data directory: %w", err)
		}
	}

	// Each store is kept on m only once open, so that Close closes only what is open.
	start := time.Now()
	j := journal.New(journalDir)
	j.Logger = log.With("component", "journal")
	j.Now = m.Now
	j.OnFlush = met.observeFlush
	if err := j.Open(ctx); err != nil {
		return stores{}, fmt.Errorf("serve: open journal: %w", err)
	}
	m.Journal = j

	inv := inproc.NewInventory(m.Journal, snapshotsDir)
	inv.Logger = log.With("component", "inventory")
	inv.Now = m.Now
	// Final reservations leave memory after the retention, once the ledger (whose
	// writer starts below) has them durably; the API then answers from the ledger.
	var writer atomic.Pointer[revguard.LedgerWriter]
	inv.Retention = cfg.Retention
	inv.Archived = func() uint64 {
		if w := writer.Load(); w != nil {
			return w.Durable()
		}
		return 0
	}
	if err := inv.Open(ctx); err != nil {
		return stores{}, fmt.Errorf("serve: recover inventory: %w", err)
	}
	m.Inventory = inv
	log.Info("inventory recovered", "journal_seq", m.Journal.LastSeq(), "took", time.Since(start).Round(time.Millisecond))

	db := sqlite.NewDB(filepath.Join(cfg.DataDir, dbFileName))
	db.Logger = log.With("component", "sqlite")
	db.Now = m.Now
	if err := db.Open(ctx); err != nil {
		return stores{}, fmt.Errorf("serve: open database: %w", err)
	}
	m.DB = db
	m.Ledger = sqlite.NewLedger(m.DB)
	m.rawSessions = sqlite.NewSessions(m.DB)
	m.Sessions = inproc.NewSessionCacheSize(m.rawSessions, m.Config.SessionCache)
	m.Sessions.TTL = m.Config.SessionCacheTTL
	m.Sessions.Now = m.Now

	// The waiting rooms, rebuilt from their log in the database; their timer admits.
	room := inproc.NewWaitingRoom(sqlite.NewRoomLog(m.DB), m.Inventory)
	room.Now = m.Now
	room.Logger = log.With("component", "waitingroom")
	if err := room.Open(ctx); err != nil {
		return stores{}, fmt.Errorf("serve: recover waiting rooms: %w", err)
	}
	m.Room = room

	// The journal has two followers: the ledger writer and the change writer (the
	// event stream's and the webhooks' change log).
	shared := &sharedJournal{j: m.Journal}
	m.Changes = sqlite.NewChangeLog(m.DB)
	m.Webhooks = sqlite.NewWebhooks(m.DB)
	m.ChangeWriter = &revguard.ChangeWriter{Feed: shared.follower(1), Log: m.Changes, FirstSeq: shared.firstSeq,
		Logger: log.With("component", "changes")}
	m.Dispatcher = &webhook.Dispatcher{Store: m.Webhooks, Changes: m.ChangeWriter, Logger: log.With("component", "webhook"), Now: m.Now}

	m.Writer = &revguard.LedgerWriter{Feed: shared.follower(0), Ledger: m.Ledger, Logger: log.With("component", "ledger"), Now: m.Now}
	if cfg.LedgerMaxDefer > 0 {
		m.Writer.MaxDefer = cfg.LedgerMaxDefer
		m.Writer.Peak = newPeakDetector(m.Journal, m.Writer.Applied, 0).Peak
		m.ChangeWriter.MaxDefer = cfg.LedgerMaxDefer
		peak := newPeakDetector(m.Journal, m.ChangeWriter.JournalSeq, changesPeakWindow)
		m.ChangeWriter.Peak = peak.Peak
		m.Dispatcher.Peak, m.Dispatcher.MaxDefer = peak.Peak, cfg.LedgerMaxDefer
	}
	writer.Store(m.Writer)
	m.writerDone = make(chan struct{})
	m.wg.Add(2)
	// The ledger writer follows the journal until Close cancels bg (after letting it catch up).
	go func() {
		defer m.wg.Done()
		defer close(m.writerDone)
		if err := m.Writer.Run(bg); err != nil && bg.Err() == nil {
			m.writerErr = err
			log.Error("ledger writer stopped: the ledger no longer follows the journal", "err", err)
		}
	}()
	// The purge loop deletes expired sessions every minute until Close cancels bg.
	go func() {
		defer m.wg.Done()
		_ = m.rawSessions.RunPurge(bg, sessionPurgeInterval) // returns nil when bg ends
	}()
	// The session cache is warmed from SQLite in the background: after a restart (a
	// crash in the middle of a drop, a deploy before one) the crowd's next requests find
	// their sessions in memory instead of each reading the store; and again shortly
	// before each opening, for the crowd whose sessions were issued long before. Both
	// end when Close cancels bg.
	m.sessionsWarmed = make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.warmSessionCache(bg, log)
	}()
	// The change writer, the webhook dispatcher and the change log's pruning run until
	// Close cancels bg.
	m.wg.Add(3)
	go func() {
		defer m.wg.Done()
		_ = m.ChangeWriter.Run(bg)
	}()
	go func() {
		defer m.wg.Done()
		_ = m.Dispatcher.Run(bg)
	}()
	go func() {
		defer m.wg.Done()
		m.pruneChanges(bg, m.Changes)
	}()

	met.registerStores(m)
	return stores{
		inventory: m.Inventory,
		ledger:    m.Ledger,
		sessions:  m.Sessions,
		room:      m.Room,
		changes:   m.ChangeWriter,
		webhooks:  m.Webhooks,
		kick:      m.Dispatcher.Kick,
		dashboard: &httpapi.Dashboard{SKUs: m.Inventory.ForEachSKU, LedgerLag: m.Writer.Lag},
		limiter: func(_ string, r revguard.Rate) revguard.RateLimiter {
			return inproc.NewRateLimiter(r)
		},
	}, nil
}

// Ready reports whether the server can serve: recovery finished, the ledger writer (or
// outbox consumer) runs and every store answers. Its error's detail names what is not
// ready, for /readyz.
func (m *Main) Ready(ctx context.Context) error {
	if !m.ready.Load() {
		return revguard.Errorf(revguard.CodeUnavailable, "starting or stopping")
	}
	if m.Fleet != nil {
		return m.Fleet.ready(ctx)
	}
	select {
	case <-m.JournalFailed():
		return revguard.Errorf(revguard.CodeUnavailable, "the journal cannot write: the server must restart")
	case <-m.writerDone:
		return revguard.Errorf(revguard.CodeUnavailable, "the ledger writer stopped")
	default:
	}
	if err := m.DB.Ping(ctx); err != nil {
		return revguard.Errorf(revguard.CodeUnavailable, "the database does not answer")
	}
	return nil
}

// connsWithin is the bound on open connections under a limit of files open: the
// limit less an eighth, at least 256, kept for everything else; half of a limit
// under 512.
func connsWithin(files uint64) int {
	if files < 512 {
		return int(files / 2)
	}
	return int(min(files-max(files/8, 256), 1<<30))
}

// tryListen binds addr (--addr) and debugAddr (--debug-addr, when set) together, and
// closes both again before it returns (Open binds them again once ready). A host that
// does not exist, or an address not of this machine, is a usage error.
func tryListen(ctx context.Context, addr, debugAddr string) error {
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for _, a := range []struct{ flag, addr string }{
		{"--addr (REVGUARD_ADDR)", addr}, {"--debug-addr (REVGUARD_DEBUG_ADDR)", debugAddr},
	} {
		if a.addr == "" {
			continue
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", a.addr)
		if dns, ok := errors.AsType[*net.DNSError](err); ok && dns.IsNotFound || errors.Is(err, syscall.EADDRNOTAVAIL) {
			// A mistake in the configuration, not a failure.
			return usageErrorf("serve: %s: listen on %s: %v", a.flag, a.addr, err)
		}
		if err != nil {
			return fmt.Errorf("serve: %s: listen on %s: %w", a.flag, a.addr, err)
		}
		held = append(held, ln)
	}
	return nil
}

// Addr returns the address the server listens on; nil before Open.
func (m *Main) Addr() net.Addr {
	if m.ln == nil {
		return nil
	}
	return m.ln.Addr()
}

// URL returns the server's base URL, e.g. http://127.0.0.1:8080.
func (m *Main) URL() string {
	if m.ln == nil {
		return ""
	}
	return localURL(m.ln.Addr())
}

// localURL is the http URL of a listener's address as this machine reaches it: an
// unspecified host (--addr :8080, 0.0.0.0:8080 or [::]:8080, all of which Go listens
// on as [::], both families), which a browser does not open, is 127.0.0.1, which
// every such listener takes (::1 is missing from some containers' loopback).
func localURL(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	}
	return "http://" + addr.String()
}

// DashboardLink returns a link to the live dashboard that opens it without the admin
// token until ttl has passed.
func (m *Main) DashboardLink(ttl time.Duration) string {
	return m.URL() + "/dashboard/#token=" + m.API.DashboardToken(m.Now().Add(ttl))
}

// changePruner is a change log that deletes its old changes (sqlite.ChangeLog,
// postgres.ChangeLog).
type changePruner interface {
	PruneChanges(ctx context.Context, before time.Time) (int64, error)
}

// pruneChanges deletes from log, every hour until ctx ends, the changes older than the
// change log's retention.
func (m *Main) pruneChanges(ctx context.Context, log changePruner) {
	tick.NowAndEvery(ctx, changePruneInterval, func() {
		if n, err := log.PruneChanges(ctx, m.Now().Add(-changeRetention)); err != nil && ctx.Err() == nil {
			m.Logger.Error("prune the change log", "err", err)
		} else if n > 0 {
			m.Logger.Info("pruned the change log", "changes", n)
		}
	})
}

// Done receives an error if the HTTP server stops serving by itself.
func (m *Main) Done() <-chan error { return m.serveDone }

// JournalFailed is closed when the embedded mode's journal fails for good (a write or
// fsync failed); nil in distributed mode.
func (m *Main) JournalFailed() <-chan struct{} {
	if m.Journal == nil {
		return nil
	}
	return m.Journal.Failed()
}

// Close closes everything Open opened, in reverse order: it stops accepting and lets
// in-flight requests finish (up to Config.ShutdownTimeout), lets the ledger writer catch
// up with the journal (in distributed mode: the outbox apply what it read), then closes
// the inventory (final snapshot), the journal and the database (in distributed mode:
// PostgreSQL, the sessions, the inventory and the Redis client). It is safe to call
// more than once.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	m.ready.Store(false)
	var errs []error
	if m.debug != nil {
		errs = append(errs, m.debug.Close())
	}
	if m.HTTPServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
		if err := m.HTTPServer.Shutdown(ctx); err != nil {
			m.Logger.Warn("in-flight requests did not finish in time; closing their connections", "err", err)
			errs = append(errs, m.HTTPServer.Close())
		}
		cancel()
	} else if m.ln != nil {
		errs = append(errs, m.ln.Close())
	}
	if m.Writer != nil && m.Journal.Err() == nil {
		// After a journal failure the process stops for a restart, which the drain
		// would only delay: the ledger catches up from the journal at the next start.
		m.drainLedger()
	}
	if m.Fleet != nil && m.Fleet.Outbox != nil {
		m.Fleet.drain(m.Logger)
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.Room != nil {
		errs = append(errs, m.Room.Close())
	}
	if m.Inventory != nil {
		if err := m.Inventory.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close inventory: %w", err))
		}
	}
	if m.Journal != nil {
		if err := m.Journal.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close journal: %w", err))
		}
	}
	if m.Sessions != nil {
		if err := m.Sessions.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close session cache: %w", err))
		}
	}
	if m.DB != nil {
		if err := m.DB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close database: %w", err))
		}
	}
	if m.Fleet != nil {
		errs = append(errs, m.Fleet.close())
	}
	return errors.Join(errs...)
}

// drainLedger waits, for a bounded time, until the ledger writer has applied every
// durable event, so that a graceful stop leaves the ledger caught up. Nothing is lost if
// it cannot: the journal keeps the events until the ledger has consumed them.
func (m *Main) drainLedger() {
	target := m.Journal.Durable()
	ctx, cancel := context.WithTimeout(context.Background(), ledgerDrainTimeout)
	defer cancel()
	go func() { // ends the wait early if the writer has stopped; exits with ctx
		select {
		case <-m.writerDone:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := m.Writer.WaitApplied(ctx, target); err != nil {
		m.Logger.Warn("the ledger did not catch up before shutdown; it will at the next start",
			"applied", m.Writer.Applied(), "durable", target)
	}
}

// exampleOf configures the storefront example: the widget is Cloudflare's when the bot
// check talks to Cloudflare, else the stand-in served with the page (a fake verifier
// in development and tests), so that the page then loads nothing from elsewhere.
func exampleOf(cfg Config) *httpapi.Example {
	ex := &httpapi.Example{SiteKey: cfg.TurnstileSiteKey, WidgetScript: httpapi.DevWidgetScript}
	if ex.SiteKey == "" {
		ex.SiteKey = TestSiteKey
	}
	if cfg.TurnstileURL == DefaultTurnstileURL {
		ex.WidgetScript = httpapi.CloudflareWidgetScript
	}
	return ex
}

// Before a SKU opens, the session cache is warmed again (warmSessionCache).
const (
	openingWarmLead  = time.Minute      // how long before the opening, at most half the cache's TTL
	openingWarmCheck = 10 * time.Second // how often the next opening is looked up, at most half the lead
)

// warmSessionCache warms the session cache from SQLite when the server starts, then
// before each opening of a SKU (revguard.SKUUpdate.OpensAt) that the warm-ups so far
// do not cover, so that a crowd whose sessions were issued long before finds them in
// memory when the sale opens. It returns when ctx ends.
func (m *Main) warmSessionCache(ctx context.Context, log *slog.Logger) {
	w := newOpeningWarmer(m.Sessions.TTL)
	if keep := m.Now().Add(w.ttl / 2); m.warmSessions(ctx, log, "start", keep) {
		w.covered = keep
	}
	close(m.sessionsWarmed)
	tick.Every(ctx, w.tick, func() {
		// An opening that passed since the last look, missed for a SKU put less than
		// a tick before it, still calls for a warm, late.
		now := m.Now()
		next, ok := m.Inventory.NextOpening(now.Add(-w.tick))
		if !ok {
			return
		}
		if keep, due := w.due(now, next); due && m.warmSessions(ctx, log, "opening", keep) {
			w.covered = keep
		}
	})
}

// openingWarmer decides when the session cache is warmed again before an opening.
type openingWarmer struct {
	lead, tick, ttl time.Duration
	// covered is when the last warm-up's sessions may start to leave the cache: every
	// session live then is cached until this time at least (or its expiry).
	covered time.Time
}

func newOpeningWarmer(ttl time.Duration) *openingWarmer {
	lead := min(openingWarmLead, ttl/2)
	// At least a second between looks: each ranges over every SKU.
	return &openingWarmer{lead: lead, tick: max(min(openingWarmCheck, lead/2), time.Second), ttl: ttl}
}

// due reports whether the opening at next calls for a warm-up at now, and if so until
// when it is to keep the sessions: half the TTL past the opening. An opening more than
// the lead away waits; one whose first quarter of a TTL the last warm-up covers (an
// opening soon after another, an opening moved) needs none.
func (w *openingWarmer) due(now, next time.Time) (keep time.Time, ok bool) {
	if next.Sub(now) > w.lead || !w.covered.Before(next.Add(w.ttl/4)) {
		return time.Time{}, false
	}
	return next.Add(w.ttl / 2), true
}

// warmSessions fills the session cache from SQLite (inproc.SessionCache.Warm, keeping
// every session until keep), logs how it went, and reports whether it succeeded; why
// says what it is for.
func (m *Main) warmSessions(ctx context.Context, log *slog.Logger, why string, keep time.Time) bool {
	start := time.Now()
	n, err := m.Sessions.Warm(ctx, m.rawSessions.EachLive, keep)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("session cache: warm-up failed; sessions are read from SQLite on first use", "for", why, "err", err, "cached", n)
		}
		return false
	}
	log.Info("session cache warmed", "for", why, "sessions", n, "took", time.Since(start).Round(time.Millisecond))
	return true
}
