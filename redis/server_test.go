package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// testServer is a redis-server of a test's own, on a loopback port, with its files in
// a directory of the test, stopped by its PID at the end of the test.
type testServer struct {
	tb   testing.TB
	Port int
	Dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// URL returns the server's redis:// URL.
func (s *testServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Addr returns the server's host:port.
func (s *testServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// redisServer returns the path of redis-server, skipping the test when it is not
// installed (failing it when REVGUARD_TEST_REQUIRE_ALL=1).
func redisServer(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("REVGUARD_TEST_REQUIRE_ALL") == "1" {
			tb.Fatal("redis-server is not installed and REVGUARD_TEST_REQUIRE_ALL=1")
		}
		tb.Skip("redis-server is not installed")
	}
	return p
}

// freePort returns a loopback port that was free a moment ago, whose Cluster bus port
// (port+10000) is free too. Both lie below the kernel's range of ephemeral ports, so
// that while a test restarts its server on the same port, no outgoing connection of
// another test can take it; where that range cannot be read, the port is one the
// kernel picks.
func freePort(tb testing.TB) int {
	tb.Helper()
	lo := 32768 // Linux's default start of the ephemeral range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				lo = v
			}
		}
	}
	free := func(port int) bool {
		for _, p := range []int{port, port + 10000} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				return false
			}
			l.Close()
		}
		return true
	}
	for range 100 {
		port := 0
		if lo-10000 > 10000 {
			port = 10000 + rand.IntN(lo-20000) // port and bus port in [10000, lo)
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				tb.Fatal(err)
			}
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
			if port >= 55535 {
				continue
			}
		}
		if free(port) {
			return port
		}
	}
	tb.Fatal("no free loopback port")
	return 0
}

// startServer starts redis-server in dir on a free port with the extra settings
// args, and waits until it answers.
func startServer(tb testing.TB, dir string, args ...string) *testServer {
	tb.Helper()
	s := &testServer{tb: tb, Port: freePort(tb), Dir: dir, args: args}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

func (s *testServer) start() {
	s.tb.Helper()
	if err := s.tryStart(); err != nil {
		s.tb.Fatal(err)
	}
}

// errExitedAtStart is tryStart's error when the server exits before it answers.
var errExitedAtStart = errors.New("redis-server exited at start")

// tryStart starts the server and waits until it answers. It fails with
// errExitedAtStart and the server's log when the server exits first; when the server
// does not answer in time, it kills it and fails.
func (s *testServer) tryStart() error {
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--daemonize", "no", "--logfile", filepath.Join(s.Dir, "redis.log")}, s.args...)
	cmd := exec.Command(redisServer(s.tb), args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() // reaps the process; exits with it
	s.cmd, s.done = cmd, done
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			return fmt.Errorf("%w: %s", errExitedAtStart, log)
		default:
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on port %d does not answer: %v", s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// repairAOF runs redis-check-aof --fix on the stopped server's AOF, as
// docs/distributed.md tells an operator to after a crash that tore it: the file is cut
// before the torn transaction's MULTI. It reports whether anything was cut.
func (s *testServer) repairAOF() bool {
	s.tb.Helper()
	bin, err := exec.LookPath("redis-check-aof")
	if err != nil {
		s.tb.Fatalf("redis-check-aof, which repairs a torn AOF: %v", err)
	}
	cmd := exec.Command(bin, "--fix", filepath.Join(s.Dir, "appendonlydir", "appendonly.aof.manifest"))
	cmd.Stdin = strings.NewReader("y\n") // it asks before it cuts
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.tb.Fatalf("redis-check-aof --fix: %v\n%s", err, out)
	}
	return bytes.Contains(out, []byte("Successfully truncated"))
}

// kill sends SIGKILL to the server and waits for it to die.
func (s *testServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

func (s *testServer) stop() { s.kill() }
