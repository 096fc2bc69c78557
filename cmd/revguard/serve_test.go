package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// TestBinary_ExitCodes runs the real binary: usage mistakes exit 2 with a clear message,
// help and version exit 0.
func TestBinary_ExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stdout string // in stdout
		stderr string // in stderr
	}{
		{"BadRate", []string{"serve", "--data-dir", dir, "--rate-limit-ip", "bogus"}, exitUsage, "", `invalid rate "bogus"`},
		{"Distributed", []string{"serve", "--data-dir", dir, "--redis-url", "redis://127.0.0.1:6379/0"}, exitUsage, "", "distributed mode"},
		{"NoCommand", nil, exitUsage, "", "no command given"},
		{"UnknownCommand", []string{"launch"}, exitUsage, "", `unknown command "launch"`},
		{"Help", []string{"--help"}, exitOK, "--rate-limit-customer rate", ""},
		{"ServeHelp", []string{"serve", "--help"}, exitOK, "env REVGUARD_TURNSTILE_SECRET", ""},
		{"Version", []string{"version"}, exitOK, "revguard ", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := startChild(tt.args, false)
			if err != nil {
				t.Fatal(err)
			}
			if code := ch.wait(30 * time.Second); code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, ch.Stdout, ch.Log)
			}
			if !strings.Contains(ch.Stdout.String(), tt.stdout) || !strings.Contains(ch.Log.String(), tt.stderr) {
				t.Errorf("stdout %q, stderr %q; want %q and %q in them", ch.Stdout, ch.Log, tt.stdout, tt.stderr)
			}
			if tt.code == exitUsage && !strings.Contains(ch.Log.String(), "revguard help") {
				t.Errorf("usage error without a hint to the help: %q", ch.Log)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused configuration wrote to the data dir: %v", entries)
	}
}

// TestBinary_GracefulShutdown sends SIGTERM to the real binary while a reservation is
// in flight (held up in the bot check): the server stops accepting connections, the
// reservation still gets its 201, the process exits 0, and the reservation is there
// after a restart.
func TestBinary_GracefulShutdown(t *testing.T) {
	verifier := turnstiletest.New()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default: // a retry after a timeout: the test fails on the 503 it gets
		}
		<-release
		verifier.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go slow.Serve(ln) // ends at slow.Close below
	defer slow.Close()

	dir := t.TempDir()
	ch, err := startChild([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir,
		"--admin-token", testAdminToken, "--rate-limit-ip", "off", "--turnstile-secret", verifier.Secret,
		"--turnstile-url", "http://" + ln.Addr().String() + turnstiletest.Path}, true)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, ch.Log)
	}
	defer ch.kill()
	c := newClient(t, ch.URL, 2)
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/late", testAdminToken, map[string]any{"stock": 3})
	token := c.mustSession(t, "c-late")

	var (
		wg   sync.WaitGroup
		res  *apiResponse
		rerr error
	)
	wg.Go(func() {
		res, rerr = c.do(t.Context(), "POST", "/v1/skus/late/reservations", token, nil,
			"CF-Turnstile-Response", verifier.Token())
	})
	<-arrived // the reservation is inside the server, waiting for the verifier
	if err := ch.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The server stops accepting new connections while the reservation is in flight.
	addr := strings.TrimPrefix(ch.URL, "http://")
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 10 s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-ch.exited:
		t.Fatalf("exited with a request in flight:\n%s", ch.Log)
	default:
	}
	close(release)
	wg.Wait()
	if rerr != nil || res.Status != http.StatusCreated {
		t.Fatalf("in-flight reservation: %v %v", res, rerr)
	}
	if code := ch.wait(30 * time.Second); code != exitOK {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, ch.Log)
	}

	srv := MustRunServer(t, dir, nil)
	checkSKU(t, newClient(t, srv.URL, 1), "late", 3, 2, 1, 0)
}

// TestBinary_READMEServe runs the README's first command as it is, `revguard serve`
// and nothing else, in a fresh directory: the server listens on 127.0.0.1:8080, makes
// ./revguard-data, prints its generated admin token and the bot check's warning,
// answers with that token, and exits 0 on SIGTERM. It skips where 8080 is taken.
func TestBinary_READMEServe(t *testing.T) {
	const addr = "127.0.0.1:8080"
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the README's default address %s is taken on this machine: %v", addr, err)
	}
	ln.Close()
	wd := t.TempDir()
	ch, err := startChildIn(wd, []string{"serve"}, true)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, ch.Log)
	}
	defer ch.kill()
	if ch.URL != "http://"+addr {
		t.Errorf("listening on %s, want http://%s", ch.URL, addr)
	}
	log := ch.Log.String()
	_, rest, ok := strings.Cut(log, "admin token (generated; shown only this once, set --admin-token to choose one): ")
	token, _, _ := strings.Cut(rest, "\n")
	if !ok || len(token) < 32 {
		t.Fatalf("no generated admin token in the log:\n%s", log)
	}
	if !strings.Contains(log, "BOT CHECK IS OFF") {
		t.Errorf("no warning that the bot check is off:\n%s", log)
	}
	c := newClient(t, ch.URL, 1)
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/readme", token, map[string]any{"stock": 500})
	if _, err := os.Stat(filepath.Join(wd, "revguard-data", "journal")); err != nil {
		t.Errorf("the default data dir: %v", err)
	}
	if err := ch.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := ch.wait(30 * time.Second); code != exitOK {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, ch.Log)
	}
}

// newTestMain returns a Main on a temporary data dir and 127.0.0.1:0.
func newTestMain(dir string) *Main {
	m := NewMain()
	m.Config.Addr = "127.0.0.1:0"
	m.Config.DataDir = dir
	m.Config.AdminToken = testAdminToken
	return m
}

func TestMain_OpenClose(t *testing.T) {
	dir := t.TempDir()
	m := newTestMain(dir)
	if err := m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"journal", "snapshots", "revguard.db"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("data dir layout: %v", err)
		}
	}
	if err := m.Ready(t.Context()); err != nil {
		t.Errorf("Ready after Open: %v", err)
	}
	if m.Addr() == nil || !strings.HasPrefix(m.URL(), "http://127.0.0.1:") {
		t.Errorf("URL %q", m.URL())
	}
	// A second server on the same data dir is refused: two writers would interleave the
	// journal.
	m2 := newTestMain(dir)
	if err := m2.Open(t.Context()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open on the same data dir: %v, want an error saying it is in use", err)
		m2.Close()
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(t.Context()); err == nil {
		t.Error("Ready after Close: nil")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Close released everything: the data dir opens again.
	m3 := newTestMain(dir)
	if err := m3.Open(t.Context()); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if err := m3.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMain_CloseStopsGoroutines checks that Close ends every goroutine Open started
// (ledger writer, session purge, journal flusher, expirer, snapshotter, session cache,
// HTTP server; in distributed mode the outbox consumer and its readers, the sampler,
// the sweeper, the sessions' subscription and the clients' pools), after requests have
// used them.
func TestMain_CloseStopsGoroutines(t *testing.T) { eachMode(t, testMainCloseStopsGoroutines) }

func testMainCloseStopsGoroutines(t *testing.T, mode mode) {
	var stores *fleetStores
	if mode == distributedMode {
		stores = mustFleetStores(t) // before the goroutine snapshot: its cleanup dials Redis
	}
	// fasthttp's idle-worker cleaner checks for the server's stop between sleeps of
	// its MaxIdleWorkerDuration (10 s), so it ends up to 10 s after Close.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"))
	m := newTestMain(t.TempDir())
	if stores != nil {
		m.Config.RedisURL, m.Config.PostgresURL = stores.redisURL, stores.postgresURL
		m.Config.RedisNamespace, m.Config.PostgresSchema = stores.namespace, stores.schema
	}
	if err := m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	c := &apiClient{base: m.URL(), hc: &http.Client{Transport: tr}}
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/leak", testAdminToken, map[string]any{"stock": 2})
	token := c.mustSession(t, "c-leak")
	c.must(t, http.StatusCreated, nil, "POST", "/v1/skus/leak/reservations", token, nil)
	c.must(t, http.StatusOK, nil, "GET", "/metrics", "", nil)
	tr.CloseIdleConnections()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMain_OpenErrors(t *testing.T) {
	t.Run("DataDirIsAFile", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		m := newTestMain(file)
		if err := m.Open(t.Context()); err == nil || !strings.Contains(err.Error(), "data directory") {
			t.Errorf("Open = %v, want a data directory error", err)
		}
	})
	t.Run("CorruptJournal", func(t *testing.T) {
		dir := t.TempDir()
		m := newTestMain(dir)
		if err := m.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Inventory.PutSKU(t.Context(), "x", revguard.SKUUpdate{Stock: 1, PerCustomerLimit: 1, HoldSeconds: 60}); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		seg, _ := filepath.Glob(filepath.Join(dir, "journal", "*.log"))
		if len(seg) == 0 {
			t.Fatal("no journal segment")
		}
		if err := os.WriteFile(seg[0], []byte("this is not a journal segment at all"), 0o600); err != nil {
			t.Fatal(err)
		}
		m = newTestMain(dir)
		err := m.Open(t.Context())
		if err == nil || !errors.Is(err, journal.ErrCorrupt) {
			t.Fatalf("Open on a corrupt journal = %v, want journal.ErrCorrupt", err)
		}
	})
	t.Run("AddrInUse", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		dir := filepath.Join(t.TempDir(), "new")
		for _, debug := range []bool{false, true} {
			m := newTestMain(dir)
			if debug {
				m.Config.DebugAddr = ln.Addr().String()
			} else {
				m.Config.Addr = ln.Addr().String()
			}
			if err := m.Open(t.Context()); err == nil || !strings.Contains(err.Error(), "listen") {
				t.Fatalf("Open on a used port (debug %v) = %v, want a listen error", debug, err)
			}
			// Told before the stores are opened: no data dir made.
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a failed Open (debug %v) made the data dir: %v", debug, err)
			}
		}
		for _, addr := range []string{"192.0.2.1:1"} { // not this machine's (no lookup: no traffic)
			m := newTestMain(dir)
			m.Config.Addr = addr
			if err := m.Open(t.Context()); exitCode(err) != exitUsage {
				t.Errorf("Open on %s = %v (exit %d), want a usage error", addr, err, exitCode(err))
				if err == nil {
					m.Close() // a machine that binds any address (ip_nonlocal_bind)
				}
			}
		}
		m := newTestMain(dir) // --addr and --debug-addr on one port
		free, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m.Config.Addr = free.Addr().String()
		m.Config.DebugAddr = free.Addr().String()
		free.Close()
		if err := m.Open(t.Context()); err == nil || !strings.Contains(err.Error(), "--debug-addr") {
			t.Errorf("Open with --addr and --debug-addr on one port = %v, want a listen error naming --debug-addr", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a failed Open made the data dir: %v", err)
		}
		m = newTestMain(dir)
		if err := m.Open(t.Context()); err != nil {
			t.Fatalf("Open after a failed Open: %v", err)
		}
		m.Close()
	})
	t.Run("Distributed", func(t *testing.T) {
		m := newTestMain(t.TempDir())
		m.Config.RedisURL = "redis://127.0.0.1:6379/0"
		err := m.Open(t.Context())
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "needs --postgres-url") {
			t.Fatalf("Open with a Redis URL alone = %v, want a usage error", err)
		}
	})
}

func TestLedgerLagEvents(t *testing.T) {
	for _, tt := range []struct{ durable, applied, want uint64 }{
		{10, 10, 0},
		{10, 12, 0}, // applied read after a later durable: never negative
		{15, 10, 5},
		{0, 0, 0},
	} {
		if got := ledgerLagEvents(tt.durable, tt.applied); got != tt.want {
			t.Errorf("ledgerLagEvents(%d, %d) = %d, want %d", tt.durable, tt.applied, got, tt.want)
		}
	}
}

// TestMain_FixedPorts opens a server on ports given (as the README's 127.0.0.1:8080),
// not 0: the early check of the addresses must let them go before Open binds them
// for good.
func TestMain_FixedPorts(t *testing.T) {
	m := newTestMain(t.TempDir())
	m.Config.Addr, m.Config.DebugAddr = freeLoopbackAddr(t), freeLoopbackAddr(t)
	if err := m.Open(t.Context()); err != nil {
		t.Fatalf("Open on free ports %s and %s: %v", m.Config.Addr, m.Config.DebugAddr, err)
	}
	defer m.Close()
	if got := m.Addr().String(); got != m.Config.Addr {
		t.Errorf("listening on %s, want %s", got, m.Config.Addr)
	}
	if code := getStatus(t, m.URL()+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz on %s: status %d", m.URL(), code)
	}
	if code := getStatus(t, "http://"+m.Config.DebugAddr+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("profiles on %s: status %d", m.Config.DebugAddr, code)
	}
}

// openDebugMain opens a Main with its profiles on a loopback port, closed with the test.
func openDebugMain(t *testing.T) *Main {
	t.Helper()
	m := newTestMain(t.TempDir())
	m.Config.DebugAddr = "127.0.0.1:0"
	if err := m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// getStatus GETs u and returns the answer's status.
func getStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestMain_DebugAddr: with --debug-addr the runtime's profiles are served on a listener
// of their own, and not on the API's.
func TestMain_DebugAddr(t *testing.T) {
	m := openDebugMain(t)
	if code := getStatus(t, "http://"+m.DebugAddr().String()+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Errorf("goroutine profile on the debug listener: status %d, want 200", code)
	}
	if code := getStatus(t, m.URL()+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("profiles on the API listener: status %d, want 404", code)
	}
}

// TestMain_DebugSampling: the block and mutex sampling, which costs every lock and
// channel operation, is off until one of those profiles is asked for, on while it is
// taken (?seconds=N), and off again after; the profile holds what blocked meanwhile.
func TestMain_DebugSampling(t *testing.T) {
	m := openDebugMain(t)
	if f := runtime.SetMutexProfileFraction(-1); f != 0 {
		t.Fatalf("mutex sampling %d before any profile was asked for, want 0 (off)", f)
	}
	type result struct {
		body []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + m.DebugAddr().String() + "/debug/pprof/block?seconds=2")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			got <- result{err: fmt.Errorf("status %d, not a gzipped profile: %w", resp.StatusCode, err)}
			return
		}
		b, err := io.ReadAll(zr)
		got <- result{b, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.SetMutexProfileFraction(-1) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sampling never went on while the block profile was taken")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Block until the profile is in: an event before its first snapshot would be
	// subtracted out.
	var r result
	for done := false; !done; {
		blockedForProfile(20 * time.Millisecond)
		select {
		case r = <-got:
			done = true
		default:
		}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !bytes.Contains(r.body, []byte("blockedForProfile")) {
		t.Error("the block profile lacks the function that blocked while it was taken")
	}
	if f := runtime.SetMutexProfileFraction(-1); f != 0 {
		t.Errorf("mutex sampling %d after the profile, want 0 (off)", f)
	}
}

// TestMain_DebugSamplingRequests: the index's text links answer at once, and a
// profile longer than the bound is refused without turning the sampling on.
func TestMain_DebugSamplingRequests(t *testing.T) {
	m := openDebugMain(t)
	for _, tt := range []struct {
		query string
		want  int
	}{
		{"block?debug=1", http.StatusOK},
		{"mutex?debug=1", http.StatusOK},
		{"block?seconds=601", http.StatusBadRequest},
		{"mutex?seconds=100000000000", http.StatusBadRequest},
		{"block?seconds=abc", http.StatusBadRequest},
	} {
		if code := getStatus(t, "http://"+m.DebugAddr().String()+"/debug/pprof/"+tt.query); code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.query, code, tt.want)
		}
		if f := runtime.SetMutexProfileFraction(-1); f != 0 {
			t.Errorf("%s: mutex sampling %d after the answer, want 0 (off)", tt.query, f)
		}
	}
}

// blockedForProfile blocks on a channel for d.
//
//go:noinline
func blockedForProfile(d time.Duration) {
	c := make(chan struct{})
	time.AfterFunc(d, func() { close(c) })
	<-c
}

// TestMain_SessionCacheSettings: --session-cache-ttl reaches the embedded session cache.
func TestMain_SessionCacheSettings(t *testing.T) {
	m := newTestMain(t.TempDir())
	m.Config.SessionCache = 10
	m.Config.SessionCacheTTL = 3 * time.Minute
	if err := m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Sessions.TTL != 3*time.Minute {
		t.Fatalf("session cache TTL %v, want the configured 3m", m.Sessions.TTL)
	}
}

// TestMain_SessionCacheWarmedAtStart restarts a server on the same data dir: the new
// process holds the live sessions in memory without any request having read them
// (the revoked one left out), as many as --session-cache allows.
func TestMain_SessionCacheWarmedAtStart(t *testing.T) {
	dir := t.TempDir()
	m := newTestMain(dir)
	if err := m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const sessions = 40
	var tokens []string
	for i := range sessions {
		tok, _, err := m.Sessions.CreateSession(ctx, fmt.Sprintf("c-%d", i), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	if err := m.Sessions.DeleteSession(ctx, tokens[0]); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	for _, size := range []int{1000, 10} {
		m := newTestMain(dir)
		m.Config.SessionCache = size
		if err := m.Open(ctx); err != nil {
			t.Fatal(err)
		}
		want := min(sessions-1, size)
		if got := cachedSessions(m, want); got != want {
			m.Close()
			t.Fatalf("--session-cache %d: %d sessions cached after the restart, want %d", size, got, want)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// cachedSessions returns how many sessions m's cache holds once it holds want, which
// the background warm-up fills, or after 30 s (which only stops a hang).
func cachedSessions(m *Main, want int) int {
	for deadline := time.Now().Add(30 * time.Second); m.Sessions.Len() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return m.Sessions.Len()
}

// TestMain_SessionCacheWarmedBeforeOpening issues sessions behind the cache's back
// once the warm-up at start has ended (as sessions issued long before a drop have left
// the cache), then puts a SKU that opens in a few seconds: the server loads them into
// memory before the crowd comes. Nothing else would: no request reads them.
func TestMain_SessionCacheWarmedBeforeOpening(t *testing.T) {
	m := newTestMain(t.TempDir())
	m.Config.SessionCacheTTL = 4 * time.Second // a lead of 2 s, looked up every second
	if err := m.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := t.Context()
	<-m.sessionsWarmed
	const sessions = 20
	for i := range sessions {
		if _, _, err := m.rawSessions.CreateSession(ctx, fmt.Sprintf("c-%d", i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Sessions.Len(); got != 0 {
		t.Fatalf("%d sessions cached before any opening, want 0", got)
	}
	if _, _, err := m.Inventory.PutSKU(ctx, "drop", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 1, HoldSeconds: 600,
		OpensAt: m.Now().Add(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got := cachedSessions(m, sessions); got != sessions {
		t.Fatalf("%d sessions cached around the opening, want %d", got, sessions)
	}
}

// TestOpeningWarmer checks when the session cache is warmed again before an opening:
// within the lead only, late for an opening that just passed, once for an opening and
// not again for one its warm-up covers, again for a later one, and never looking up
// openings more than once a second.
func TestOpeningWarmer(t *testing.T) {
	w := newOpeningWarmer(10 * time.Minute)
	if w.lead != time.Minute || w.tick != 10*time.Second {
		t.Fatalf("lead %v, tick %v; want 1m and 10s with a TTL of 10m", w.lead, w.tick)
	}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	opening := now.Add(time.Minute)
	for _, c := range []struct {
		name string
		next time.Time
		due  bool
	}{
		{"two minutes ahead", now.Add(2 * time.Minute), false},
		{"61 s ahead", now.Add(61 * time.Second), false},
		{"a minute ahead", opening, true},
		{"passed 5 s ago", now.Add(-5 * time.Second), true},
	} {
		keep, due := w.due(now, c.next)
		if due != c.due || (due && !keep.Equal(c.next.Add(5*time.Minute))) {
			t.Errorf("%s: due = %v, keep %v; want %v, keep half the TTL past the opening", c.name, due, keep, c.due)
		}
	}
	keep, _ := w.due(now, opening)
	w.covered = keep // the warm-up for the opening succeeded
	if _, due := w.due(now.Add(10*time.Second), opening); due {
		t.Error("the same opening is warmed for twice")
	}
	if _, due := w.due(opening, opening.Add(20*time.Second)); due {
		t.Error("an opening 20 s after a warmed one is warmed for again, though the first warm-up covers it")
	}
	if _, due := w.due(opening.Add(2*time.Minute), opening.Add(3*time.Minute)); !due {
		t.Error("an opening 3 minutes after a warmed one is not warmed for")
	}
	if w := newOpeningWarmer(time.Second); w.lead != 500*time.Millisecond || w.tick != time.Second {
		t.Errorf("with a TTL of 1s: lead %v, tick %v; want 500ms, and no more than a look a second", w.lead, w.tick)
	}
}

// TestLocalURL: the URL printed for an address on every interface is one a browser on
// this machine opens.
func TestLocalURL(t *testing.T) {
	for _, tt := range []struct {
		addr *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "http://127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "http://127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 18890}, "http://127.0.0.1:18890"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 1}, "http://[::1]:1"},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 80}, "http://192.0.2.7:80"},
	} {
		if got := localURL(tt.addr); got != tt.want {
			t.Errorf("localURL(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	// What a listener on every interface reports (no traffic: it is closed at once).
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if got, want := localURL(ln.Addr()), "http://127.0.0.1:"+strconv.Itoa(port); got != want {
		t.Errorf("localURL(%v) = %q, want %q", ln.Addr(), got, want)
	}
}

// TestBinary_ConnectionFlood floods the real binary with connections that send nothing
// after cutting its open-file limit to 128 (prlimit): accepting runs out of file
// descriptors, which used to end the process (fasthttp took the error for the
// listener's end). The server rides it out, and serves again once the flood is gone.
func TestBinary_ConnectionFlood(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skipf("prlimit (util-linux), which cuts the server's open-file limit, is not installed: %v", err)
	}
	ch, err := startChild([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--admin-token", testAdminToken}, true)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, ch.Log)
	}
	defer ch.kill()
	if out, err := exec.Command(prlimit, "--pid", strconv.Itoa(ch.cmd.Process.Pid), "--nofile=128:128").CombinedOutput(); err != nil {
		t.Skipf("prlimit cannot cut the server's limit here: %v: %s", err, out)
	}
	addr := strings.TrimPrefix(ch.URL, "http://")
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 300 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		flood = append(flood, c)
	}
	// Out of descriptors: the log says so, and the process stays.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(ch.Log.String(), "cannot accept connections"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no word of the accept failing:\n%s", ch.Log)
		}
	}
	time.Sleep(200 * time.Millisecond) // past several retries
	select {
	case <-ch.exited:
		t.Fatalf("the server exited in the flood:\n%s", ch.Log)
	default:
	}
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	c := newClient(t, ch.URL, 1)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := c.do(t.Context(), "GET", "/healthz", "", nil)
		if err == nil && resp.Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving 30 s after the flood: %v, %v\n%s", resp, err, ch.Log)
		}
	}
	if err := ch.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := ch.wait(30 * time.Second); code != exitOK {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, ch.Log)
	}
}
