package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/loadtest"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// smallSale is a sale of a second or two on the real embedded server: a crowd with
// double clicks, bots, confirms, releases and abandoned holds.
var smallSale = []string{
	"--customers", "150", "--stock", "30", "--arrival", "burst", "--hold-seconds", "2",
	"--confirm", "0.5", "--confirm-delay", "100ms", "--release", "0.2", "--release-delay", "50ms",
	"--bots", "0.2", "--connections", "16", "--duration", "10s", "--ledger-wait", "10s", "--seed", "3",
}

// runLoadtest runs `revguard loadtest args...` and returns its stdout and stderr.
func runLoadtest(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	lc := &LoadtestCommand{Getenv: func(string) string { return "" }, Stdout: &stdout, Stderr: &stderr}
	err := lc.Run(t.Context(), args)
	return stdout.String(), stderr.String(), err
}

func TestLoadtestEmbedded(t *testing.T) {
	parent := t.TempDir()
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	stdout, stderr, err := runLoadtest(t, append(smallSale, "--json", "--data-dir", parent, "--cpu-profile", prof)...)
	if err != nil {
		t.Fatalf("loadtest against the embedded server failed: %v\n%s\n%s", err, stdout, stderr)
	}
	var rep loadtest.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, stdout)
	}
	if rep.Mode != "embedded" || len(rep.Checks) != 8 || rep.Err() != nil {
		t.Errorf("mode %q, checks %+v", rep.Mode, rep.Checks)
	}
	sa := rep.Sale
	if sa.Reserved < 30 || sa.SoldOut == 0 || sa.Confirmed == 0 || sa.Bots != 30 || sa.BotHolds != 0 {
		t.Errorf("want a sold-out sale with confirms and refused bots: %+v", sa)
	}
	for _, c := range rep.Checks {
		// In a burst for scarce stock, bots may all come after the sell-out.
		if c.Skipped && c.Name != loadtest.CheckBots {
			t.Errorf("check %s skipped: %s", c.Name, c.Detail)
		}
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("the embedded server's folder was left behind: %v", left)
	}
	// --cpu-profile wrote a profile: pprof's gzipped protocol buffer.
	if b, err := os.ReadFile(prof); err != nil || len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--cpu-profile: %d bytes, %v; want a gzipped profile", len(b), err)
	}
	t.Logf("%s", stderr)
}

// MustStartTarget starts a server on 127.0.0.1:0 with a temporary data directory and
// the per-IP rate limit off; configure adjusts its configuration first.
func MustStartTarget(tb testing.TB, configure func(*Config)) *Main {
	tb.Helper()
	m := NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DataDir = tb.TempDir()
	m.Config.AdminToken = "loadtest-admin-token"
	m.Config.RateLimitIP = revguard.Rate{}
	if configure != nil {
		configure(&m.Config)
	}
	if err := m.Open(tb.Context()); err != nil {
		tb.Fatalf("open server: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeLoopbackAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestLoadtestTargetFakeVerifier walks the --target flow: the command runs the fake
// verifier on the address given, prints the flags that point a server at it, and drives
// a server started with those flags. The stock outlasts the crowd, so that every bot
// meets the bot check.
func TestLoadtestTargetFakeVerifier(t *testing.T) {
	addr := freeLoopbackAddr(t)
	srv := MustStartTarget(t, func(c *Config) {
		c.TurnstileURL = "http://" + addr + turnstiletest.Path
		c.TurnstileSecret = turnstiletest.DefaultSecret
	})
	stdout, stderr, err := runLoadtest(t, append(smallSale, "--target", srv.URL(), "--admin-token", "loadtest-admin-token",
		"--fake-verifier", addr, "--stock", "1000")...)
	if err != nil {
		t.Fatalf("loadtest failed: %v\n%s\n%s", err, stdout, stderr)
	}
	want := fmt.Sprintf("--turnstile-url http://%s%s --turnstile-secret %s", addr, turnstiletest.Path, turnstiletest.DefaultSecret)
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks the serve flags %q:\n%s", want, stderr)
	}
	for _, s := range []string{"(target)", "PASS: all 8 checks", "403 bot_check_failed", "PASS  no-bot-admitted", "PASS  humans-served"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("report lacks %q:\n%s", s, stdout)
		}
	}
}

// TestLoadtestErrBotCheckOff: against a server whose bot check is off, bots get in, and
// the load test must fail naming the check. The stock outlasts the crowd, so that bots
// are not refused sold_out before the bot check.
func TestLoadtestErrBotCheckOff(t *testing.T) {
	srv := MustStartTarget(t, nil)
	stdout, stderr, err := runLoadtest(t, append(smallSale, "--target", srv.URL()+","+srv.URL(), "--stock", "1000",
		"--admin-token", "loadtest-admin-token", "--turnstile-token", "anything", "--bots", "0.2")...)
	if err == nil || !strings.Contains(err.Error(), "no-bot-admitted") || exitCode(err) != exitError {
		t.Fatalf("err = %v (exit %d), want a failure naming no-bot-admitted with exit 1\n%s\n%s", err, exitCode(err), stdout, stderr)
	}
	if !strings.Contains(stdout, "FAIL: check no-bot-admitted broke: ") {
		t.Errorf("report lacks the FAIL line:\n%s", stdout)
	}
	if strings.Count(stdout, "FAIL: check") != 1 {
		t.Errorf("want only the bot check to fail:\n%s", stdout)
	}
}

// TestLoadtestErrHumansRefused: against a server whose bot-check verifier does not
// answer, every buyer is refused (503 bot_check_unavailable), nothing is sold and so
// nothing oversold; the load test must fail all the same, naming the check.
func TestLoadtestErrHumansRefused(t *testing.T) {
	srv := MustStartTarget(t, func(c *Config) {
		c.TurnstileURL = "http://" + freeLoopbackAddr(t) + turnstiletest.Path // nobody listens
		c.TurnstileSecret = turnstiletest.DefaultSecret
	})
	stdout, stderr, err := runLoadtest(t, append(smallSale, "--target", srv.URL(), "--stock", "1000",
		"--admin-token", "loadtest-admin-token", "--turnstile-token", "anything", "--bots", "0")...)
	if err == nil || !strings.Contains(err.Error(), "humans-served") || exitCode(err) != exitError {
		t.Fatalf("err = %v (exit %d), want a failure naming humans-served with exit 1\n%s\n%s", err, exitCode(err), stdout, stderr)
	}
	if !strings.Contains(stdout, "bot_check_unavailable") {
		t.Errorf("the report does not say why:\n%s", stdout)
	}
}

func TestLoadtestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"ErrArrival", []string{"--arrival", "wave"}, "invalid arrival"},
		{"ErrQuantity", []string{"--quantity", "2"}, "quantity"},
		{"ErrBots", []string{"--bots", "lots"}, "not a number"},
		{"ErrShares", []string{"--confirm", "0.8", "--release", "0.5"}, "add up to at most 1"},
		{"ErrTargetURL", []string{"--target", "127.0.0.1:8080", "--admin-token", "t"}, "want a base URL"},
		{"ErrNoAdminToken", []string{"--target", "http://127.0.0.1:8080"}, "needs --admin-token"},
		{"ErrVerifierNotLoopback", []string{"--target", "http://127.0.0.1:8080", "--admin-token", "t", "--fake-verifier", "10.0.0.1:8099"}, "not a loopback address"},
		{"ErrVerifierEmbedded", []string{"--fake-verifier", "127.0.0.1:8099"}, "are for --target"},
		{"ErrVerifierAndToken", []string{"--target", "http://x", "--admin-token", "t", "--fake-verifier", "127.0.0.1:1", "--turnstile-token", "x"}, "not both"},
		{"ErrBaseline", []string{"--baseline", "mongo"}, "unknown baseline"},
		{"ErrBaselineURL", []string{"--baseline", "redis"}, "needs --redis-url"},
		{"ErrBaselineDistributedURL", []string{"--baseline", "distributed", "--redis-url", "redis://h/0"}, "needs --redis-url and --postgres-url"},
		{"ErrBaselineOnly", []string{"--baseline-only"}, "needs --baseline"},
		{"ErrArgument", []string{"now"}, "unexpected argument"},
		{"ErrFlag", []string{"--stonks"}, "flag provided but not defined"},
		{"ErrPipeline", []string{"--pipeline", "-1"}, "--pipeline"},
		{"ErrWait", []string{"--wait", "-1s"}, "must be positive"},
		{"ErrRequestTimeout", []string{"--request-timeout", "0s"}, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runLoadtest(t, tc.args...)
			if _, ok := errors.AsType[*usageError](err); !ok || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want a usage error about %q", err, tc.want)
			}
		})
	}
	t.Run("Help", func(t *testing.T) {
		stdout, _, err := runLoadtest(t, "--help")
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("err = %v, want flag.ErrHelp", err)
		}
		for _, f := range []string{"-target", "-admin-token", "-customers", "-stock", "-limit", "-hold-seconds", "-quantity",
			"-arrival", "-ramp", "-rate", "-bots", "-confirm", "-confirm-delay", "-release", "-duration", "-connections",
			"-sku", "-json", "-seed", "-fake-verifier", "-baseline", "REVGUARD_ADMIN_TOKEN"} {
			if !strings.Contains(stdout, f) {
				t.Errorf("help lacks %s", f)
			}
		}
	})
}

// TestLoadtestParseOnce checks that each flag counts once, --drop or not: a list flag
// (targets, baselines) given once is one entry.
func TestLoadtestParseOnce(t *testing.T) {
	for _, drop := range []bool{false, true} {
		args := []string{"--target", "http://127.0.0.1:1", "--admin-token", "t", "--baseline", "redis", "--redis-url", "redis://127.0.0.1:1/0"}
		if drop {
			args = append([]string{"--drop"}, args...)
		}
		c, err := (&LoadtestCommand{}).parse(args)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.targets) != 1 || len(c.baselines) != 1 {
			t.Errorf("drop %v: targets %v, baselines %v; want one of each", drop, c.targets, c.baselines)
		}
		if drop != (c.scenario.Customers == 1_000_000) {
			t.Errorf("drop %v: %d customers", drop, c.scenario.Customers)
		}
	}
}

func TestLoadtestBaselines(t *testing.T) {
	var env []string
	for _, k := range []string{"REVGUARD_TEST_REDIS_URL", "REVGUARD_TEST_POSTGRES_URL"} {
		if os.Getenv(k) == "" {
			if os.Getenv("REVGUARD_TEST_REQUIRE_ALL") == "1" {
				t.Fatalf("%s is unset and REVGUARD_TEST_REQUIRE_ALL=1", k)
			}
			t.Skipf("%s is unset: skipping the baselines against real servers", k)
		}
		env = append(env, k)
	}
	var stdout, stderr bytes.Buffer
	lc := &LoadtestCommand{Getenv: os.Getenv, Stdout: &stdout, Stderr: &stderr}
	err := lc.Run(t.Context(), []string{"--baseline-only", "--baseline", "redis,postgres,distributed",
		"--customers", "400", "--stock", "100", "--arrival", "burst", "--connections", "8"})
	if err != nil {
		t.Fatalf("baselines failed: %v\n%s", err, stdout.String())
	}
	for _, s := range []string{"baseline redis-lua:", "baseline postgres:", "baseline revguard distributed:",
		"comparison of the reserve path", "reserved 100, 0 left", "PASS  ledger"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, stdout.String())
		}
	}
}

// TestWaitReady_BotCheck: with --fake-verifier, a target that answers /readyz with its
// bot check off is not the one the printed flags start: loadtest waits for it to be
// restarted, and gives up saying why.
func TestWaitReady_BotCheck(t *testing.T) {
	var on atomic.Bool
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if polls.Add(1) == 3 {
			on.Store(true) // restarted with the flags
		}
		state := "off"
		if on.Load() {
			state = "on"
		}
		fmt.Fprintf(w, `{"status":"ready","bot_check":%q}`, state)
	}))
	defer srv.Close()
	var notices bytes.Buffer
	if err := waitReady(t.Context(), []string{srv.URL}, 10*time.Second, true, &notices); err != nil {
		t.Fatalf("waitReady: %v", err)
	}
	if polls.Load() < 3 || !strings.Contains(notices.String(), "answers with its bot check off") {
		t.Errorf("ready after %d polls, notices %q: want a wait while the bot check was off", polls.Load(), notices.String())
	}

	on.Store(false)
	polls.Store(-1000) // stays off
	err := waitReady(t.Context(), []string{srv.URL}, 600*time.Millisecond, true, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "still has its bot check off") {
		t.Errorf("waitReady on a target whose bot check stays off: %v", err)
	}
	// Without --fake-verifier a target with the bot check off is ready.
	if err := waitReady(t.Context(), []string{srv.URL}, time.Second, false, io.Discard); err != nil {
		t.Errorf("waitReady without the bot check: %v", err)
	}
}
