package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// childEnv makes the test binary run main instead of the tests, so that the shutdown
// and crash tests signal a real revguard process.
const childEnv = "REVGUARD_TEST_AS_BINARY"

// TestMain runs the test binary as the revguard binary itself when childEnv is set:
// the shutdown and crash tests start it as a child process and signal it.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main() // exits
	}
	os.Exit(m.Run())
}

// envMap returns a getenv reading m.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// flagTable is docs/api.md's configuration table plus the flags issue 3 adds: the help must
// list each flag with its variable and default.
var flagTable = []struct{ flag, env, def string }{
	{"--addr", "REVGUARD_ADDR", "127.0.0.1:8080"},
	{"--data-dir", "REVGUARD_DATA_DIR", "./revguard-data"},
	{"--admin-token", "REVGUARD_ADMIN_TOKEN", "generated, printed once at start"},
	{"--turnstile-secret", "REVGUARD_TURNSTILE_SECRET", "empty: bot check off"},
	{"--turnstile-url", "REVGUARD_TURNSTILE_URL", "https://challenges.cloudflare.com/turnstile/v0/siteverify"},
	{"--redis-url", "REVGUARD_REDIS_URL", "empty"},
	{"--postgres-url", "REVGUARD_POSTGRES_URL", "empty"},
	{"--redis-namespace", "REVGUARD_REDIS_NAMESPACE", "rg"},
	{"--postgres-schema", "REVGUARD_POSTGRES_SCHEMA", "revguard"},
	{"--outbox-min-idle", "REVGUARD_OUTBOX_MIN_IDLE", "30s"},
	{"--rate-limit-customer", "REVGUARD_RATE_LIMIT_CUSTOMER", "10/s"},
	{"--rate-limit-ip", "REVGUARD_RATE_LIMIT_IP", "100/s"},
	{"--trusted-proxies", "REVGUARD_TRUSTED_PROXIES", "empty"},
	{"--turnstile-hostname", "REVGUARD_TURNSTILE_HOSTNAME", "empty: not checked"},
	{"--turnstile-action", "REVGUARD_TURNSTILE_ACTION", "empty: not checked"},
	{"--log-level", "REVGUARD_LOG_LEVEL", "info"},
	{"--shutdown-timeout", "REVGUARD_SHUTDOWN_TIMEOUT", "20s"},
	{"--retention", "REVGUARD_RETENTION", "25h0m0s"},
	{"--ledger-max-defer", "REVGUARD_LEDGER_MAX_DEFER", "30s"},
	{"--debug-addr", "REVGUARD_DEBUG_ADDR", "empty: off"},
	{"--session-cache", "REVGUARD_SESSION_CACHE", "1000000"},
	{"--session-cache-ttl", "REVGUARD_SESSION_CACHE_TTL", "10m0s"},
}

func TestRun_Help(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"}, {"serve", "--help"}, {"serve", "-h"}, {"help", "serve"}, {"help", "help"}, {"help", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args, envMap(nil), &stdout, &stderr)
			if code := exitCode(err); code != exitOK {
				t.Fatalf("exit code %d (err %v), want 0", code, err)
			}
			out := stdout.String()
			for _, f := range flagTable {
				// Each flag's entry: "--name arg\n  usage\n  env VAR; default: ...".
				i := strings.Index(out, "  "+f.flag+" ")
				if i < 0 {
					t.Fatalf("help does not list %s:\n%s", f.flag, out)
				}
				entry := out[i:]
				if j := strings.Index(entry[2:], "\n  --"); j >= 0 {
					entry = entry[:j+2]
				}
				if !strings.Contains(entry, "env "+f.env+";") || !strings.Contains(entry, "default: "+f.def) {
					t.Errorf("help entry of %s lacks env %s or default %q:\n%s", f.flag, f.env, f.def, entry)
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("help wrote to stderr: %q", stderr.String())
			}
		})
	}
}

func TestRun_MainHelpListsCommands(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"help"}, envMap(nil), &stdout, &stdout); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, c := range []string{"serve", "version", "export", "verify", "loadtest", "help"} {
		if !strings.Contains(stdout.String(), "\n  "+c+" ") {
			t.Errorf("help does not list command %s:\n%s", c, stdout.String())
		}
	}
}

// TestRun_Dispatch checks that every subcommand is reachable: its help names it.
func TestRun_Dispatch(t *testing.T) {
	for _, c := range commands() {
		if c.name == "help" {
			continue
		}
		for _, args := range [][]string{{"help", c.name}, {c.name, "--help"}} {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args, envMap(nil), &stdout, &stderr)
			if exitCode(err) != exitOK || !strings.Contains(stdout.String(), "revguard "+c.name) {
				t.Errorf("run %q: err %v, stdout %q", args, err, stdout.String())
			}
		}
	}
}

func TestRun_UsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string // in the error message
	}{
		{nil, nil, "no command"},
		{[]string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, nil, `unknown command "frobnicate"`},
		{[]string{"serve", "--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"serve", "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"serve", "--rate-limit-ip", "fast"}, nil, `invalid rate "fast"`},
		{[]string{"serve"}, map[string]string{"REVGUARD_RATE_LIMIT_CUSTOMER": "10/h"}, "REVGUARD_RATE_LIMIT_CUSTOMER"},
		{[]string{"serve", "--addr", "localhost"}, nil, "--addr (REVGUARD_ADDR)"},
		{[]string{"serve", "--redis-url", "redis://127.0.0.1:6379/0"}, nil, "distributed mode needs --postgres-url"},
		{[]string{"serve"}, map[string]string{"REVGUARD_POSTGRES_URL": "postgres://postgres@127.0.0.1/test"}, "distributed mode needs --redis-url"},
		{[]string{"serve", "--redis-url", "redis://h/0", "--postgres-url", "postgres://h/db", "--redis-namespace", "a:b"}, nil, "--redis-namespace"},
		{[]string{"version", "extra"}, nil, "unexpected argument"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, envMap(tt.env), &stdout, &stderr)
			if code := exitCode(err); code != exitUsage {
				t.Fatalf("exit code %d (err %v), want %d", code, err, exitUsage)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if msg := errorMessage(err); !strings.Contains(msg, "revguard help") {
				t.Errorf("message %q gives no hint to the help", msg)
			}
		})
	}
}

func TestParseServeConfig_OK(t *testing.T) {
	rate := func(n int, per time.Duration) revguard.Rate { return revguard.Rate{N: n, Per: per} }
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		edit func(*Config) // applied to DefaultConfig to make the expected one
	}{
		{"Defaults", nil, nil, func(*Config) {}},
		{"Env", nil, map[string]string{
			"REVGUARD_ADDR":                "0.0.0.0:9000",
			"REVGUARD_DATA_DIR":            "/var/lib/revguard",
			"REVGUARD_ADMIN_TOKEN":         "s3cret-admin",
			"REVGUARD_TURNSTILE_SECRET":    "1x0000000000000000000000000000000AA",
			"REVGUARD_TURNSTILE_URL":       "http://127.0.0.1:9999/siteverify",
			"REVGUARD_TURNSTILE_HOSTNAME":  "shop.example",
			"REVGUARD_TURNSTILE_ACTION":    "reserve",
			"REVGUARD_RATE_LIMIT_CUSTOMER": "5/m",
			"REVGUARD_RATE_LIMIT_IP":       "off",
			"REVGUARD_TRUSTED_PROXIES":     "10.0.0.0/8, 192.168.1.7",
			"REVGUARD_LOG_LEVEL":           "debug",
			"REVGUARD_SHUTDOWN_TIMEOUT":    "3s",
		}, func(c *Config) {
			c.Addr = "0.0.0.0:9000"
			c.DataDir = "/var/lib/revguard"
			c.AdminToken = "s3cret-admin"
			c.TurnstileSecret = "1x0000000000000000000000000000000AA"
			c.TurnstileURL = "http://127.0.0.1:9999/siteverify"
			c.TurnstileHostname = "shop.example"
			c.TurnstileAction = "reserve"
			c.RateLimitCustomer = rate(5, time.Minute)
			c.RateLimitIP = revguard.Rate{}
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}
			c.LogLevel = slog.LevelDebug
			c.ShutdownTimeout = 3 * time.Second
		}},
		{"FlagWinsOverEnv", []string{
			"--addr", "127.0.0.1:0", "--rate-limit-ip=7/s", "-data-dir", "d", "--trusted-proxies", "::1,fd00::/8",
		}, map[string]string{
			"REVGUARD_ADDR": "0.0.0.0:9000", "REVGUARD_RATE_LIMIT_IP": "off", "REVGUARD_DATA_DIR": "env-dir",
			"REVGUARD_TRUSTED_PROXIES": "10.0.0.0/8", "REVGUARD_LOG_LEVEL": "warn",
		}, func(c *Config) {
			c.Addr = "127.0.0.1:0"
			c.RateLimitIP = rate(7, time.Second)
			c.DataDir = "d"
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00::/8")}
			c.LogLevel = slog.LevelWarn // from the environment: no flag given
		}},
		{"FlagWinsOverMalformedEnv", []string{"--rate-limit-ip", "off", "--log-level=error"}, map[string]string{
			"REVGUARD_RATE_LIMIT_IP": "fast", "REVGUARD_LOG_LEVEL": "loud",
		}, func(c *Config) {
			c.RateLimitIP = revguard.Rate{}
			c.LogLevel = slog.LevelError
		}},
		{"EmptyEnvIsUnset", nil, map[string]string{"REVGUARD_ADDR": "", "REVGUARD_RATE_LIMIT_IP": ""}, func(*Config) {}},
		{"HostlessAddr", []string{"--addr", ":8081"}, nil, func(c *Config) { c.Addr = ":8081" }},
		{"SessionCache", []string{"--session-cache", "2_000_000"}, map[string]string{"REVGUARD_SESSION_CACHE_TTL": "2h"}, func(c *Config) {
			c.SessionCache = 2_000_000
			c.SessionCacheTTL = 2 * time.Hour
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseServeConfig(tt.args, envMap(tt.env))
			if err != nil {
				t.Fatalf("parseServeConfig(%q): %v", tt.args, err)
			}
			want := DefaultConfig()
			tt.edit(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseServeConfig(%q, %v)\n got %+v\nwant %+v", tt.args, tt.env, got, want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Config)
		want string // "" for valid
	}{
		{"Default", func(*Config) {}, ""},
		{"IPv6Addr", func(c *Config) { c.Addr = "[::1]:0" }, ""},
		{"NoPort", func(c *Config) { c.Addr = "127.0.0.1" }, "want host:port"},
		{"BadPort", func(c *Config) { c.Addr = "127.0.0.1:http" }, "invalid port"},
		{"PortTooLarge", func(c *Config) { c.Addr = "127.0.0.1:65536" }, "invalid port"},
		{"EmptyDataDir", func(c *Config) { c.DataDir = " " }, "--data-dir"},
		{"AdminTokenWithSpace", func(c *Config) { c.AdminToken = "two words" }, "--admin-token"},
		{"TurnstileURLScheme", func(c *Config) { c.TurnstileURL = "ftp://example.com/x" }, "scheme must be http or https"},
		{"TurnstileURLRelative", func(c *Config) { c.TurnstileURL = "/siteverify" }, "--turnstile-url"},
		{"RateBuiltInCode", func(c *Config) { c.RateLimitIP = revguard.Rate{N: 3, Per: time.Hour} }, "--rate-limit-ip"},
		{"NegativeRate", func(c *Config) { c.RateLimitCustomer = revguard.Rate{N: -1, Per: time.Second} }, "--rate-limit-customer"},
		{"RateTooHigh", func(c *Config) { c.RateLimitIP = revguard.Rate{N: revguard.MaxRateN + 1, Per: time.Minute} }, "--rate-limit-ip"},
		{"ZeroShutdown", func(c *Config) { c.ShutdownTimeout = 0 }, "--shutdown-timeout"},
		{"RetentionShort", func(c *Config) { c.Retention = time.Hour }, "--retention"},
		{"LedgerMaxDeferOff", func(c *Config) { c.LedgerMaxDefer = 0 }, ""},
		{"LedgerMaxDeferNegative", func(c *Config) { c.LedgerMaxDefer = -time.Second }, "--ledger-max-defer"},
		{"SessionCacheZero", func(c *Config) { c.SessionCache = 0 }, "--session-cache"},
		{"SessionCacheHuge", func(c *Config) { c.SessionCache = 200_000_000 }, "--session-cache"},
		{"SessionCacheTTLShort", func(c *Config) { c.SessionCacheTTL = time.Millisecond }, "--session-cache-ttl"},
		{"DebugLoopback", func(c *Config) { c.DebugAddr = "127.0.0.1:6060" }, ""},
		{"DebugLocalhost", func(c *Config) { c.DebugAddr = "localhost:0" }, ""},
		{"DebugNotLoopback", func(c *Config) { c.DebugAddr = "0.0.0.0:6060" }, "--debug-addr"},
		{"DebugNoPort", func(c *Config) { c.DebugAddr = "127.0.0.1" }, "--debug-addr"},
		{"RedisURLBadScheme", func(c *Config) { c.RedisURL = "http://127.0.0.1:6379" }, "--redis-url"},
		{"RedisAlone", func(c *Config) { c.RedisURL = "redis://127.0.0.1:6379/0" }, "needs --postgres-url"},
		{"PostgresAlone", func(c *Config) { c.PostgresURL = "postgresql://127.0.0.1/test" }, "needs --redis-url"},
		{"Distributed", func(c *Config) { c.RedisURL, c.PostgresURL = "redis://127.0.0.1:6379/0", "postgres://127.0.0.1/test" }, ""},
		{"DistributedPostgresSocket", func(c *Config) {
			c.RedisURL, c.PostgresURL = "redis://127.0.0.1:6379/0", "postgres:///test?host=/var/run/postgresql"
		}, ""},
		{"DistributedRedisNoHost", func(c *Config) { c.RedisURL, c.PostgresURL = "redis:///0", "postgres://127.0.0.1/test" }, "no host"},
		{"DistributedNoDataDir", func(c *Config) {
			c.RedisURL, c.PostgresURL, c.DataDir = "redis://127.0.0.1:6379/0", "postgres://127.0.0.1/test", ""
		}, ""},
		{"DistributedBadNamespace", func(c *Config) {
			c.RedisURL, c.PostgresURL, c.RedisNamespace = "redis://127.0.0.1:6379/0", "postgres://127.0.0.1/test", "rg{x}"
		}, "--redis-namespace"},
		{"DistributedBadSchema", func(c *Config) {
			c.RedisURL, c.PostgresURL, c.PostgresSchema = "redis://127.0.0.1:6379/0", "postgres://127.0.0.1/test", "1st"
		}, "--postgres-schema"},
		{"DistributedMinIdle", func(c *Config) {
			c.RedisURL, c.PostgresURL, c.OutboxMinIdle = "redis://127.0.0.1:6379/0", "postgres://127.0.0.1/test", time.Millisecond
		}, "--outbox-min-idle"},
		// A bad value of the other mode's setting is a mistake too.
		{"EmbeddedBadNamespace", func(c *Config) { c.RedisNamespace = "bad ns" }, "--redis-namespace"},
		{"EmbeddedMinIdle", func(c *Config) { c.OutboxMinIdle = -5 * time.Second }, "--outbox-min-idle"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestConfigValidate_URLSecretsNotEchoed checks that a rejected URL, which may hold a
// password, does not appear in the error.
func TestConfigValidate_URLSecretsNotEchoed(t *testing.T) {
	c := DefaultConfig()
	c.RedisURL = "http://user:hunter2@127.0.0.1:6379"
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Validate() = %v: want an error without the password", err)
	}
}

func TestFlagValues(t *testing.T) {
	var prefixes []netip.Prefix
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "fe80::1%eth0"} {
		if err := (prefixesValue{&prefixes}).Set(bad); err == nil {
			t.Errorf("trusted proxies %q accepted: %v", bad, prefixes)
		}
	}
	if err := (prefixesValue{&prefixes}).Set("10.1.2.3/8,,::ffff:1.2.3.4"); err != nil {
		t.Fatal(err)
	}
	if got, want := (prefixesValue{&prefixes}).String(), "10.0.0.0/8,1.2.3.4/32"; got != want {
		t.Errorf("trusted proxies = %q, want %q (masked, unmapped)", got, want)
	}
	var level slog.Level
	for in, want := range map[string]slog.Level{"DEBUG": slog.LevelDebug, "warning": slog.LevelWarn, "error": slog.LevelError} {
		if err := (levelValue{&level}).Set(in); err != nil || level != want {
			t.Errorf("log level %q = %v, %v; want %v", in, level, err, want)
		}
	}
	if err := (levelValue{&level}).Set("loud"); err == nil {
		t.Error(`log level "loud" accepted`)
	}
	var d time.Duration
	if err := (durationValue{&d}).Set("forever"); err == nil {
		t.Error(`duration "forever" accepted`)
	}
}

func TestExitCode(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{flag.ErrHelp, exitOK},
		{usageErrorf("bad flag"), exitUsage},
		{fmt.Errorf("wrapped: %w", usageErrorf("bad flag")), exitUsage},
		{errors.New("disk full"), exitError},
		{context.Canceled, exitError},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, tt := range []struct {
		linked string
		bi     buildInfo
		want   string
	}{
		{"v1.2.3", buildInfo{moduleVersion: "v0.9.0", revision: "abc"}, "revguard v1.2.3 "},
		{"", buildInfo{moduleVersion: "v0.9.0"}, "revguard v0.9.0 "},
		{"", buildInfo{moduleVersion: "(devel)", revision: "0123456789abcdef", modified: true}, "revguard 0123456789ab-dirty "},
		{"", buildInfo{moduleVersion: "(devel)"}, "revguard dev "},
	} {
		if got := versionString(tt.linked, tt.bi); !strings.HasPrefix(got, tt.want) || !strings.Contains(got, "go1.") {
			t.Errorf("versionString(%q, %+v) = %q, want prefix %q and the Go version", tt.linked, tt.bi, got, tt.want)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout bytes.Buffer
		if err := run(t.Context(), args, envMap(nil), &stdout, &stdout); err != nil {
			t.Fatalf("run %q: %v", args, err)
		}
		if !strings.HasPrefix(stdout.String(), "revguard ") || strings.Count(stdout.String(), "\n") != 1 {
			t.Errorf("run %q printed %q, want one line", args, stdout.String())
		}
	}
}
