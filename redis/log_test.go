package redis_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard/internal/testlog"
	"github.com/revenueguard/revguard/redis"
)

// TestSetLogger: a failed dial's message from the go-redis pool reaches the node's
// logger at debug level, and nothing at info.
func TestSetLogger(t *testing.T) {
	// A loopback port with nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var buf testlog.Buffer
		redis.SetLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level})))
		c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatalf("ping of %s succeeded, want a dial error", addr)
		}
		cancel()
		c.Close()
		got := buf.String()
		switch {
		case level == slog.LevelDebug && !(strings.Contains(got, "level=DEBUG") && strings.Contains(got, "component=go-redis") && strings.Contains(got, "dial")):
			t.Errorf("at debug level, the log is %q: want go-redis's failed dial at DEBUG", got)
		case level == slog.LevelInfo && got != "":
			t.Errorf("at info level, the log is %q: want nothing", got)
		}
	}
	redis.SetLogger(slog.New(slog.DiscardHandler))
}
