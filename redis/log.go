package redis

import (
	"context"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"
)

// SetLogger sends go-redis's own messages (a failed dial, a pool's hook error) to l
// at debug level, instead of the standard logger's stderr: while Redis is down a busy
// node would print one line per failed dial, and the node reports the outage itself
// (the request's 503, /readyz, the warnings of its components). It applies to every
// client of the process.
func SetLogger(l *slog.Logger) {
	goredis.SetLogger(libraryLogger{l})
}

type libraryLogger struct{ l *slog.Logger }

func (g libraryLogger) Printf(ctx context.Context, format string, v ...any) {
	if g.l.Enabled(ctx, slog.LevelDebug) {
		g.l.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
	}
}
