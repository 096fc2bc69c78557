package redis_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
)

// sessServer is a redis-server of the test's own, on a spare loopback port, for tests
// that stop or freeze Redis (the shared server must not be touched).
type sessServer struct {
	addr string
	cmd  *exec.Cmd
}

// sessMustStartServer starts redis-server without persistence in a temporary
// directory, with the extra arguments args; it is killed by PID at cleanup. Like the
// other Redis tests, it runs only when REVGUARD_TEST_REDIS_URL is set (the CI job that
// has Redis installed).
func sessMustStartServer(tb testing.TB, args ...string) *sessServer {
	tb.Helper()
	sessRedisURL(tb)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server not found: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := tb.TempDir()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	cmd.Args = append(cmd.Args, args...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	srv := &sessServer{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT) // a frozen server cannot die of SIGKILL's effects late
		cmd.Process.Kill()
		cmd.Wait()
	})
	c := goredis.NewClient(&goredis.Options{Addr: srv.addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			tb.Fatalf("redis-server on %s did not answer within 10s:\n%s", srv.addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return srv
}

func (s *sessServer) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		tb.Fatal(err)
	}
}

// sessDownClient returns a client of srv with short timeouts and no retries, so that
// each call to a frozen server fails quickly.
func sessDownClient(tb testing.TB, srv *sessServer, name string) *goredis.Client {
	tb.Helper()
	return sessMustClientOpt(tb, &goredis.Options{
		Addr: srv.addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, PoolTimeout: 200 * time.Millisecond, MaxRetries: -1,
	}, name)
}

// sessBounded runs f and fails the test if it did not return within a generous bound:
// a call to a frozen Redis must give up on its own (Timeout), whatever the caller's
// context. This guards against a hang; it is not a speed measurement.
func sessBounded(tb testing.TB, what string, f func()) {
	tb.Helper()
	start := time.Now()
	f()
	if d := time.Since(start); d > 5*time.Second {
		tb.Fatalf("%s took %v: not bounded by the timeout", what, d)
	}
}

// TestSessionsRedisDown freezes Redis (SIGSTOP: no reset, no answer, as in a network
// partition). A node that has a session cached stops trusting its cache once its
// subscription goes quiet, and every call fails with CodeUnavailable, never with
// CodeUnauthenticated for a valid token. Thawed, everything works again.
func TestSessionsRedisDown(t *testing.T) {
	srv := sessMustStartServer(t)
	c1 := sessDownClient(t, srv, "node1")
	c2 := sessDownClient(t, srv, "node2")
	n1 := sessMustOpen(t, c1, "rg", nil)
	n2 := sessMustOpen(t, c2, "rg", nil)
	n1.Timeout, n2.Timeout = 300*time.Millisecond, 300*time.Millisecond
	rl := redis.NewRateLimiter(c2, "ip", revguard.Rate{N: 5, Per: time.Second})
	rl.Timeout = 300 * time.Millisecond
	ctx := context.Background() // no deadline: the bounds must come from Sessions

	tok := sessMustCreate(t, n1, "c-down")
	live := sessMustCreate(t, n1, "c-live")
	sessMustFind(t, n2, tok, "c-down")
	sessMustFind(t, n2, live, "c-live")
	if ok, _, err := rl.Allow(ctx, "198.51.100.7"); !ok || err != nil {
		t.Fatalf("Allow before the freeze = %v, %v", ok, err)
	}

	srv.signal(t, syscall.SIGSTOP)
	// Past the trust window, the cache must not answer for a Redis it cannot hear.
	time.Sleep(time.Second)
	sessBounded(t, "FindSession", func() {
		_, err := n2.FindSession(ctx, tok)
		sessWantCode(t, "FindSession(cached, Redis frozen)", err, revguard.CodeUnavailable)
	})
	sessBounded(t, "FindSession(unknown)", func() {
		_, err := n2.FindSession(ctx, revguard.NewSessionToken())
		sessWantCode(t, "FindSession(unknown token, Redis frozen)", err, revguard.CodeUnavailable)
	})
	sessBounded(t, "CreateSession", func() {
		_, _, err := n1.CreateSession(ctx, "c-down", time.Hour)
		sessWantCode(t, "CreateSession(Redis frozen)", err, revguard.CodeUnavailable)
	})
	sessBounded(t, "DeleteSession", func() {
		sessWantCode(t, "DeleteSession(Redis frozen)", n1.DeleteSession(ctx, tok), revguard.CodeUnavailable)
	})
	sessBounded(t, "Allow", func() {
		_, _, err := rl.Allow(ctx, "198.51.100.7")
		sessWantCode(t, "Allow(Redis frozen)", err, revguard.CodeUnavailable)
	})

	srv.signal(t, syscall.SIGCONT)
	// Once Redis answers again, node 2 serves the session that nobody revoked. (The
	// failed DeleteSession may still take effect: its command may sit in the frozen
	// server's socket. A client retries it, as below.)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := n2.FindSession(ctx, live)
		if err == nil {
			break
		}
		sessWantCode(t, "FindSession while Redis recovers", err, revguard.CodeUnavailable)
		if time.Now().After(deadline) {
			t.Fatalf("FindSession still failing 10s after Redis recovered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := n1.DeleteSession(ctx, tok); err != nil {
		t.Fatal(err)
	}
	sessUntilRefused(t, n2, tok, time.Now(), sessRevocationBound)
}

// TestSessionsOpenUnreachable: with no Redis at all, Open fails with CodeUnavailable
// within its timeout, and so does every call.
func TestSessionsOpenUnreachable(t *testing.T) {
	srv := sessMustStartServer(t)
	c := sessDownClient(t, srv, "")
	srv.signal(t, syscall.SIGKILL)
	srv.cmd.Wait()

	s := redis.NewSessions(c)
	s.Timeout = 300 * time.Millisecond
	sessBounded(t, "Open", func() {
		err := s.Open(context.Background())
		sessWantCode(t, "Open(no Redis)", err, revguard.CodeUnavailable)
		if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("Open(no Redis): %v: want the cause in the error", err)
		}
	})
	_, _, err := s.CreateSession(context.Background(), "c-1", time.Hour)
	sessWantCode(t, "CreateSession(no Redis)", err, revguard.CodeUnavailable)
	_, err = s.FindSession(context.Background(), revguard.NewSessionToken())
	sessWantCode(t, "FindSession(no Redis)", err, revguard.CodeUnavailable)
	_, _, err = redis.NewRateLimiter(c, "ip", revguard.Rate{N: 1, Per: time.Second}).Allow(context.Background(), "k")
	sessWantCode(t, "Allow(no Redis)", err, revguard.CodeUnavailable)
}
