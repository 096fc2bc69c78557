package redis

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// scripts are the Lua scripts of the package, one per operation. Each runs with
// EVALSHA and is loaded again with EVAL when the server answers NOSCRIPT (a restarted
// or failed-over server has an empty script cache).
type scripts struct {
	put, reserve, confirm, release, findSKU, findRes, sweep, bind, unbind, flight, unflight *goredis.Script
}

func loadScripts() *scripts {
	lib := mustRead("lib.lua")
	inv := func(name string) *goredis.Script { return goredis.NewScript(lib + "\n" + mustRead(name)) }
	return &scripts{
		put:      inv("put.lua"),
		reserve:  inv("reserve.lua"),
		confirm:  inv("confirm.lua"),
		release:  inv("release.lua"),
		findSKU:  inv("find_sku.lua"),
		findRes:  inv("find_reservation.lua"),
		sweep:    inv("sweep.lua"),
		bind:     goredis.NewScript(mustRead("bind.lua")),
		unbind:   goredis.NewScript(mustRead("unbind.lua")),
		flight:   goredis.NewScript(mustRead("flight.lua")),
		unflight: goredis.NewScript(mustRead("unflight.lua")),
	}
}

func (s *scripts) all() []*goredis.Script {
	return []*goredis.Script{s.put, s.reserve, s.confirm, s.release, s.findSKU, s.findRes, s.sweep, s.bind, s.unbind, s.flight, s.unflight}
}

func mustRead(name string) string {
	b, err := luaFiles.ReadFile("lua/" + name)
	if err != nil {
		panic("redis: embedded script " + name + ": " + err.Error())
	}
	return string(b)
}

// replyStrings converts a script's reply, an array of strings, to a slice.
func replyStrings(v any) ([]string, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("reply %T, want an array", v)
	}
	out := make([]string, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("reply element %d is %T, want a string", i, e)
		}
		out[i] = s
	}
	return out, nil
}

// storeErr maps a failure to reach or use Redis: a cancelled context stays as it is
// (the caller went away); a timeout, an unreachable or unready server, a Cluster
// that is resharding or down, a read-only replica after a failover become
// CodeUnavailable, so that the gateway answers 503 with Retry-After and the client
// retries (with its idempotency key). Anything else, such as a script error, is
// internal. A script never changes part of what it would: it runs atomically.
func storeErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return err
	case unavailable(err):
		return &revguard.Error{Code: revguard.CodeUnavailable, Detail: "the inventory store is unavailable, try again"}
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// unavailable reports whether err means that Redis could not be reached or could not
// serve the command for now.
func unavailable(err error) bool {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, goredis.ErrClosed), errors.Is(err, goredis.ErrPoolTimeout),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne),
		goredis.IsLoadingError(err), goredis.IsReadOnlyError(err), goredis.IsClusterDownError(err),
		goredis.IsTryAgainError(err), goredis.IsMasterDownError(err), goredis.IsMaxClientsError(err),
		goredis.IsNoReplicasError(err), goredis.IsOOMError(err),
		goredis.HasErrorPrefix(err, "BUSY"), goredis.HasErrorPrefix(err, "MOVED"), goredis.HasErrorPrefix(err, "ASK"):
		return true
	}
	return false
}
