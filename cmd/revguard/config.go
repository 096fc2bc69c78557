package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
)

// DefaultTurnstileURL is Cloudflare's siteverify endpoint.
const DefaultTurnstileURL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"

// TestSiteKey is Cloudflare's documented Turnstile test site key that always passes:
// the example page's default.
const TestSiteKey = "1x00000000000000000000AA"

// Config is the configuration of `revguard serve` (docs/api.md, "Configuration"). Each field
// has a flag and a REVGUARD_* environment variable; the flag wins.
type Config struct {
	Addr    string // listen address; port 0 picks a free port
	DataDir string // embedded mode's files: journal/, snapshots/, revguard.db

	// AdminToken is the admin bearer token; empty means generate one and print it once.
	AdminToken string

	TurnstileSecret   string // empty: bot check off (warned loudly at start)
	TurnstileURL      string // the siteverify endpoint
	TurnstileHostname string // optional: the hostname the challenge must have been solved on
	TurnstileAction   string // optional: the action the widget must have been given

	// Example serves the storefront example at /example/ (a demo: its session
	// endpoint issues sessions to anyone); TurnstileSiteKey is its widget's site key.
	Example          bool
	TurnstileSiteKey string

	// Distributed mode: both URLs set (one alone is refused). The SKUs, reservations,
	// sessions and rate limits live in Redis under RedisNamespace, the ledger in
	// PostgreSQL in PostgresSchema; DataDir is not used. Several deployments (or test
	// runs) can share the servers with namespaces and schemas of their own.
	RedisURL       string
	PostgresURL    string
	RedisNamespace string
	PostgresSchema string
	// OutboxMinIdle is how long ledger events that a node read and did not apply (it
	// died) wait before another node takes them over.
	OutboxMinIdle time.Duration

	RateLimitCustomer revguard.Rate  // reserve, confirm and release requests per customer
	RateLimitIP       revguard.Rate  // requests per client IP
	TrustedProxies    []netip.Prefix // peers whose X-Forwarded-For is honoured

	LogLevel        slog.Level
	ShutdownTimeout time.Duration // how long in-flight requests get to finish at shutdown

	// Retention is how long a final reservation (and its idempotency key) stays in the
	// engine after it became final; the API then answers for it from the ledger. At
	// least the API's 24 hours.
	Retention time.Duration

	// LedgerMaxDefer bounds how long the ledger writer defers applying events while the
	// journal takes them at a peak rate; 0 turns the deferral off.
	LedgerMaxDefer time.Duration

	// SessionCache bounds the sessions the embedded mode keeps in memory, each for
	// SessionCacheTTL from its login or its read from SQLite.
	SessionCache    int
	SessionCacheTTL time.Duration

	// DebugAddr, when set, serves the runtime profiles (net/http/pprof) on a listener
	// of their own, apart from the API. It must be a loopback address: profiles show
	// the program's internals and cost CPU to take.
	DebugAddr string
}

// DefaultConfig returns the configuration of docs/api.md's defaults.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		DataDir:           "./revguard-data",
		TurnstileURL:      DefaultTurnstileURL,
		RateLimitCustomer: revguard.Rate{N: 10, Per: time.Second},
		RateLimitIP:       revguard.Rate{N: 100, Per: time.Second},
		RedisNamespace:    redis.DefaultNamespace,
		PostgresSchema:    postgres.DefaultSchema,
		OutboxMinIdle:     redis.DefaultMinIdle,
		LogLevel:          slog.LevelInfo,
		ShutdownTimeout:   20 * time.Second,
		LedgerMaxDefer:    revguard.DefaultMaxDefer,
		SessionCache:      inproc.DefaultMaxCachedSessions,
		SessionCacheTTL:   inproc.DefaultSessionCacheTTL,
		Retention:         revguard.DefaultRetention,
	}
}

// Distributed reports whether c runs the distributed mode: Redis and PostgreSQL URLs.
func (c *Config) Distributed() bool { return c.RedisURL != "" || c.PostgresURL != "" }

// Validate checks every field, naming the flag and its environment variable in the
// error. Distributed mode needs both URLs: with one alone the node would run a
// different system than the one asked for.
func (c *Config) Validate() error {
	if err := validateAddr(c.Addr); err != nil {
		return fmt.Errorf("--addr (REVGUARD_ADDR): %w", err)
	}
	if !c.Distributed() && strings.TrimSpace(c.DataDir) == "" {
		return errors.New("--data-dir (REVGUARD_DATA_DIR) must not be empty")
	}
	if c.AdminToken != "" && !validBearerToken(c.AdminToken) {
		return errors.New("--admin-token (REVGUARD_ADMIN_TOKEN) must be printable ASCII without spaces")
	}
	if err := validateURL(c.TurnstileURL, "http", "https"); err != nil {
		return fmt.Errorf("--turnstile-url (REVGUARD_TURNSTILE_URL): %w", err)
	}
	if err := validateRate(c.RateLimitCustomer); err != nil {
		return fmt.Errorf("--rate-limit-customer (REVGUARD_RATE_LIMIT_CUSTOMER): %w", err)
	}
	if err := validateRate(c.RateLimitIP); err != nil {
		return fmt.Errorf("--rate-limit-ip (REVGUARD_RATE_LIMIT_IP): %w", err)
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("--shutdown-timeout (REVGUARD_SHUTDOWN_TIMEOUT) must be positive")
	}
	if c.Retention < revguard.MinRetention {
		return fmt.Errorf("--retention (REVGUARD_RETENTION) must be at least %v: idempotency keys are remembered for 24 hours", revguard.MinRetention)
	}
	if c.LedgerMaxDefer < 0 {
		return errors.New("--ledger-max-defer (REVGUARD_LEDGER_MAX_DEFER) must not be negative")
	}
	if c.SessionCache < 1 || c.SessionCache > maxSessionCache {
		return fmt.Errorf("--session-cache (REVGUARD_SESSION_CACHE) must be between 1 and %d", maxSessionCache)
	}
	if c.SessionCacheTTL < time.Second {
		return errors.New("--session-cache-ttl (REVGUARD_SESSION_CACHE_TTL) must be at least 1s")
	}
	if c.DebugAddr != "" {
		if err := validateLoopback(c.DebugAddr); err != nil {
			return fmt.Errorf("--debug-addr (REVGUARD_DEBUG_ADDR): %w", err)
		}
	}
	if c.RedisURL != "" {
		if err := validateURL(c.RedisURL, "redis", "rediss", "unix"); err != nil {
			return fmt.Errorf("--redis-url (REVGUARD_REDIS_URL): %w", err)
		}
	}
	if c.PostgresURL != "" {
		if err := validateURL(c.PostgresURL, "postgres", "postgresql"); err != nil {
			return fmt.Errorf("--postgres-url (REVGUARD_POSTGRES_URL): %w", err)
		}
	}
	// The distributed mode's settings are checked in the embedded mode too, as the
	// embedded mode's are in the distributed: a bad value is a mistake either way.
	if err := validateNames(c.RedisNamespace, c.PostgresSchema); err != nil {
		return err
	}
	if c.OutboxMinIdle < time.Second {
		return errors.New("--outbox-min-idle (REVGUARD_OUTBOX_MIN_IDLE) must be at least 1s")
	}
	if c.Distributed() {
		return c.validateDistributed()
	}
	return nil
}

// validateDistributed checks the distributed mode's settings: both URLs or none.
func (c *Config) validateDistributed() error {
	switch {
	case c.RedisURL != "" && c.PostgresURL == "":
		return errors.New("distributed mode needs --postgres-url (REVGUARD_POSTGRES_URL) too: " +
			"--redis-url (REVGUARD_REDIS_URL) is set, and the ledger lives in PostgreSQL")
	case c.RedisURL == "" && c.PostgresURL != "":
		return errors.New("distributed mode needs --redis-url (REVGUARD_REDIS_URL) too: " +
			"--postgres-url (REVGUARD_POSTGRES_URL) is set, and the inventory lives in Redis")
	}
	return nil
}

// validateNames checks the Redis namespace and the PostgreSQL schema of the
// distributed mode.
func validateNames(namespace, schema string) error {
	if !validNamespace.MatchString(namespace) {
		return fmt.Errorf("--redis-namespace (REVGUARD_REDIS_NAMESPACE): %q is not 1 to 64 characters from A-Z a-z 0-9 . _ -", namespace)
	}
	if !validSchema.MatchString(schema) {
		return fmt.Errorf("--postgres-schema (REVGUARD_POSTGRES_SCHEMA): %q is not a letter or _ then up to 62 letters, digits or _", schema)
	}
	return nil
}

// The names a namespace and a schema may have (the redis and postgres packages check
// them again at Open; here they are a configuration mistake, exit status 2).
var (
	validNamespace = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	validSchema    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

// validateAddr accepts host:port with a numeric port; an empty host means every
// interface.
func validateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid listen address %q: want host:port", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("invalid port %q in %q: want 0 to 65535", port, addr)
	}
	if strings.ContainsAny(host, " /?#@") {
		return fmt.Errorf("invalid host %q in %q", host, addr)
	}
	return nil
}

// validateLoopback accepts host:port where host is a loopback IP or localhost.
func validateLoopback(addr string) error {
	if err := validateAddr(addr); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (127.0.0.1:port, [::1]:port or localhost:port)", addr)
	}
	return nil
}

// validateURL checks that s is an absolute URL with one of schemes and a host (a path,
// for unix sockets; PostgreSQL's driver takes none, as libpq: then the host parameter
// or a local socket). The URL itself is not echoed: it may carry a password.
func validateURL(s string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URL")
	}
	for _, scheme := range schemes {
		if u.Scheme != scheme {
			continue
		}
		if u.Host == "" && !(scheme == "unix" && u.Path != "") && scheme != "postgres" && scheme != "postgresql" {
			return errors.New("the URL has no host")
		}
		return nil
	}
	return fmt.Errorf("the URL's scheme must be %s", strings.Join(schemes, " or "))
}

// validateRate checks a Rate built in code; ParseRate already guarantees this for flags.
func validateRate(r revguard.Rate) error {
	if r.Off() {
		return nil
	}
	if r.N < 1 || r.N > revguard.MaxRateN || (r.Per != time.Second && r.Per != time.Minute) {
		return fmt.Errorf("invalid rate %d per %v: want N/s or N/m, N from 1 to %d, or off", r.N, r.Per, revguard.MaxRateN)
	}
	return nil
}

// validBearerToken reports whether tok can travel in an Authorization: Bearer header.
func validBearerToken(tok string) bool {
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return false
		}
	}
	return true
}

// option is one configuration setting: its flag, environment variable and help text.
type option struct {
	name   string     // flag name, used as --name
	env    string     // environment variable
	arg    string     // placeholder of the value in the help
	usage  string     // what it means
	defDoc string     // the default as the help states it; "" means the value's own String
	value  flag.Value // bound to a Config field
}

// options binds every setting of c to its flag and environment variable. The order is
// the help's.
func (c *Config) options() []option {
	return []option{
		{"addr", "REVGUARD_ADDR", "host:port", "listen address (port 0 picks a free port)", "",
			(*stringValue)(&c.Addr)},
		{"data-dir", "REVGUARD_DATA_DIR", "dir", "embedded mode's files (journal, snapshots, SQLite ledger and sessions); not used in distributed mode", "",
			(*stringValue)(&c.DataDir)},
		{"admin-token", "REVGUARD_ADMIN_TOKEN", "token", "admin bearer token", "generated, printed once at start",
			(*stringValue)(&c.AdminToken)},
		{"turnstile-secret", "REVGUARD_TURNSTILE_SECRET", "secret", "Cloudflare Turnstile secret key", "empty: bot check off, with a loud warning at start",
			(*stringValue)(&c.TurnstileSecret)},
		{"turnstile-url", "REVGUARD_TURNSTILE_URL", "url", "Turnstile siteverify endpoint", "",
			(*stringValue)(&c.TurnstileURL)},
		{"turnstile-hostname", "REVGUARD_TURNSTILE_HOSTNAME", "host", "if set, refuse Turnstile tokens solved on another hostname", "empty: not checked",
			(*stringValue)(&c.TurnstileHostname)},
		{"turnstile-action", "REVGUARD_TURNSTILE_ACTION", "action", "if set, refuse Turnstile tokens issued for another widget action", "empty: not checked",
			(*stringValue)(&c.TurnstileAction)},
		{"turnstile-sitekey", "REVGUARD_TURNSTILE_SITEKEY", "key", "Turnstile site key of the example page's widget", "Cloudflare's always-passing test key " + TestSiteKey,
			(*stringValue)(&c.TurnstileSiteKey)},
		{"example", "REVGUARD_EXAMPLE", "", "serve the storefront example at /example/ (demo only: it issues sessions to anyone)", "off",
			boolValue{&c.Example}},
		{"redis-url", "REVGUARD_REDIS_URL", "url", "distributed mode, with --postgres-url: inventory, sessions and rate limits in Redis (redis://host:6379/0)", "empty",
			(*stringValue)(&c.RedisURL)},
		{"postgres-url", "REVGUARD_POSTGRES_URL", "url", "distributed mode, with --redis-url: the ledger in PostgreSQL (postgres://user@host:5432/db)", "empty",
			(*stringValue)(&c.PostgresURL)},
		{"redis-namespace", "REVGUARD_REDIS_NAMESPACE", "name", "distributed mode: prefix of every Redis key, so that deployments can share a server", "",
			(*stringValue)(&c.RedisNamespace)},
		{"postgres-schema", "REVGUARD_POSTGRES_SCHEMA", "name", "distributed mode: the PostgreSQL schema of the ledger's tables (created if missing)", "",
			(*stringValue)(&c.PostgresSchema)},
		{"outbox-min-idle", "REVGUARD_OUTBOX_MIN_IDLE", "duration", "distributed mode: how long ledger events read by a node that died wait before another node takes them over", "",
			durationValue{&c.OutboxMinIdle}},
		{"rate-limit-customer", "REVGUARD_RATE_LIMIT_CUSTOMER", "rate", "reserve, confirm and release requests per customer: N/s, N/m or off", "",
			rateValue{&c.RateLimitCustomer}},
		{"rate-limit-ip", "REVGUARD_RATE_LIMIT_IP", "rate", "requests per client IP: N/s, N/m or off", "",
			rateValue{&c.RateLimitIP}},
		{"trusted-proxies", "REVGUARD_TRUSTED_PROXIES", "cidrs", "comma-separated CIDRs of proxies whose X-Forwarded-For names the client IP", "empty: the socket's address is the client IP",
			prefixesValue{&c.TrustedProxies}},
		{"log-level", "REVGUARD_LOG_LEVEL", "level", "debug, info, warn or error", "",
			levelValue{&c.LogLevel}},
		{"shutdown-timeout", "REVGUARD_SHUTDOWN_TIMEOUT", "duration", "how long in-flight requests may take to finish at SIGTERM/SIGINT", "",
			durationValue{&c.ShutdownTimeout}},
		{"retention", "REVGUARD_RETENTION", "duration", "how long a final reservation stays in memory (and its idempotency key with it) before the ledger answers for it; at least 24h", "",
			durationValue{&c.Retention}},
		{"ledger-max-defer", "REVGUARD_LEDGER_MAX_DEFER", "duration", "at a peak of reservations, how long the ledger may wait before applying them, leaving the CPU and disk to the hot path (0s: never wait)", "",
			durationValue{&c.LedgerMaxDefer}},
		{"session-cache", "REVGUARD_SESSION_CACHE", "n", "embedded mode: sessions kept in memory at most (about 225 bytes each; the live ones are loaded from SQLite at start and about a minute before each opening (half the TTL when that is less), those that expire last first), so that a crowd's requests do not read SQLite", "",
			intValue{&c.SessionCache}},
		{"session-cache-ttl", "REVGUARD_SESSION_CACHE_TTL", "duration", "embedded mode: how long a session stays in memory after its login or its read from SQLite (a revocation made in SQLite rather than through the API goes unseen that long)", "",
			durationValue{&c.SessionCacheTTL}},
		{"debug-addr", "REVGUARD_DEBUG_ADDR", "host:port", "serve the Go runtime's profiles (/debug/pprof/) on this loopback address", "empty: off",
			(*stringValue)(&c.DebugAddr)},
	}
}

// defaultOptions returns the options bound to a DefaultConfig, for the help text.
func defaultOptions() []option {
	c := DefaultConfig()
	return c.options()
}

// bindFlags registers the options on fs.
func bindFlags(fs *flag.FlagSet, opts []option) {
	for _, o := range opts {
		fs.Var(o.value, o.name, o.usage)
	}
}

// applyEnv sets each option that no flag on the parsed fs set from its environment
// variable, when that is non-empty. A flag wins outright: the variable of an option given
// as a flag is not even read, so a malformed one cannot fail the start.
func applyEnv(fs *flag.FlagSet, opts []option, getenv func(string) string) error {
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, o := range opts {
		if given[o.name] {
			continue
		}
		if v := getenv(o.env); v != "" {
			if err := o.value.Set(v); err != nil {
				return fmt.Errorf("%s: %w", o.env, err)
			}
		}
	}
	return nil
}

// writeOptions writes the help's list of options with their variables and defaults.
func writeOptions(w io.Writer, opts []option) {
	for _, o := range opts {
		def := o.defDoc
		if def == "" {
			def = o.value.String()
		}
		fmt.Fprintf(w, "  %s\n      %s\n      env %s; default: %s\n", strings.TrimSpace("--"+o.name+" "+o.arg), o.usage, o.env, def)
	}
}

// parseServeConfig builds the configuration of `revguard serve` from the defaults, the
// environment and args, in that order of precedence (last wins), and validates it.
// The flags are parsed first, so that the environment fills in only what they leave.
func parseServeConfig(args []string, getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("revguard serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is printed by the caller
	opts := cfg.options()
	bindFlags(fs, opts)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, usageErrorf("serve: %s", flagError(err))
	}
	if fs.NArg() > 0 {
		return cfg, usageErrorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, opts, getenv); err != nil {
		return cfg, usageErrorf("serve: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageErrorf("serve: %v", err)
	}
	return cfg, nil
}

// stringValue is a flag.Value for a string field.
type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

// rateValue is a flag.Value for a rate: N/s, N/m or off.
type rateValue struct{ r *revguard.Rate }

func (v rateValue) String() string {
	if v.r == nil {
		return ""
	}
	return v.r.String()
}

func (v rateValue) Set(s string) error {
	r, err := revguard.ParseRate(strings.TrimSpace(s))
	if err != nil {
		return err
	}
	*v.r = r
	return nil
}

// prefixesValue is a flag.Value for a comma-separated list of CIDRs; a bare address is
// a one-address prefix.
type prefixesValue struct{ p *[]netip.Prefix }

func (v prefixesValue) String() string {
	if v.p == nil {
		return ""
	}
	s := make([]string, len(*v.p))
	for i, p := range *v.p {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (v prefixesValue) Set(s string) error {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("invalid CIDR or address %q", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	*v.p = out
	return nil
}

// maxSessionCache bounds --session-cache: 100 million sessions are about 22 GB.
const maxSessionCache = 100_000_000

// intValue is a flag.Value for a whole number; underscores may group its digits.
type intValue struct{ n *int }

func (v intValue) String() string {
	if v.n == nil {
		return ""
	}
	return strconv.Itoa(*v.n)
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(s), "_", ""))
	if err != nil {
		return fmt.Errorf("invalid number %q: want e.g. 1000000", s)
	}
	*v.n = n
	return nil
}

// boolValue is a flag.Value for a switch: --name alone, or --name=true/false.
type boolValue struct{ b *bool }

func (v boolValue) String() string {
	if v.b == nil || !*v.b {
		return "false"
	}
	return "true"
}

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid value %q: want true or false", s)
	}
	*v.b = b
	return nil
}

// IsBoolFlag lets the flag be given without a value.
func (v boolValue) IsBoolFlag() bool { return true }

// levelValue is a flag.Value for a log level.
type levelValue struct{ l *slog.Level }

func (v levelValue) String() string {
	if v.l == nil {
		return ""
	}
	return strings.ToLower(v.l.String())
}

func (v levelValue) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		*v.l = slog.LevelDebug
	case "info":
		*v.l = slog.LevelInfo
	case "warn", "warning":
		*v.l = slog.LevelWarn
	case "error":
		*v.l = slog.LevelError
	default:
		return fmt.Errorf("invalid log level %q: want debug, info, warn or error", s)
	}
	return nil
}

// durationValue is a flag.Value for a time.Duration.
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want e.g. 20s", s)
	}
	*v.d = d
	return nil
}
