package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
)

// The distributed mode's variants (issue 10), run when -redis-url and -postgres-url
// are given (or REVGUARD_TEST_REDIS_URL and REVGUARD_TEST_POSTGRES_URL are set):
//
//   - dist1: the reserve through one node of a fleet of three `revguard serve` in
//     distributed mode (a Redis namespace and a PostgreSQL schema of the run's own,
//     removed after);
//
//   - dist3: the same through the three nodes, the connections split evenly between
//     them (what a round-robin load balancer does), one generator per node, at once;
//
//   - lua: the yardstick of the two: a bare loop in this process calling the same Lua
//     reserve script on the same SKU with go-redis (redis.Inventory.BareReserve), one
//     goroutine per connection and a pool of as many connections; no HTTP, no session,
//     no rate limit, no decoding.
//
// The report gives each one's ratio to lua ("÷ lua") beside the ratio to the bare
// handler.
var distVariants = []string{"dist1", "dist3", "lua"}

// fleet is the distributed variants' setup.
type fleet struct {
	redisURL, postgresURL string
	namespace, schema     string
	nodes                 []string // base URLs
	inv                   *redis.Inventory
	close                 func()
}

// startFleet starts three nodes of o.bin on the fleet's stores and opens the inventory
// that the lua variant calls.
func startFleet(ctx context.Context, o options, dir, admin string) (*fleet, error) {
	f := &fleet{redisURL: o.redisURL, postgresURL: o.postgresURL,
		namespace: uniqueName("rgbench"), schema: uniqueName("revguard_bench_")}
	var stopNodes []func()
	f.close = func() {
		for _, s := range stopNodes {
			s()
		}
		if f.inv != nil {
			f.inv.Close()
		}
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := redis.Dial(cctx, f.redisURL); err == nil {
			redis.DeleteNamespace(cctx, c, f.namespace)
			c.Close()
		}
		postgres.DropSchema(cctx, f.postgresURL, f.schema)
	}
	for i := range 3 {
		addr, err := freeAddr()
		if err != nil {
			f.close()
			return nil, err
		}
		name := fmt.Sprintf("node%d", i+1)
		args := append([]string{"serve", "--addr", addr, "--admin-token", admin,
			"--rate-limit-customer", "off", "--rate-limit-ip", "off", "--log-level", "warn",
			"--redis-url", f.redisURL, "--postgres-url", f.postgresURL,
			"--redis-namespace", f.namespace, "--postgres-schema", f.schema}, o.args...)
		p, err := startProcess(ctx, filepath.Join(dir, name+".log"), o.bin, args...)
		if err != nil {
			f.close()
			return nil, err
		}
		stopNodes = append(stopNodes, p.stop)
		f.nodes = append(f.nodes, "http://"+addr)
		serverPIDs["http://"+addr] = p.cmd.Process.Pid
	}
	for _, u := range f.nodes {
		if err := waitReady(ctx, u); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

// openInventory opens the lua variant's inventory on the fleet's namespace, with a
// client of conns connections.
func (f *fleet) openInventory(ctx context.Context, conns int) error {
	if f.inv != nil {
		f.inv.Close()
	}
	u, err := url.Parse(f.redisURL)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("pool_size", strconv.Itoa(conns))
	u.RawQuery = q.Encode()
	c, err := redis.Dial(ctx, u.String())
	if err != nil {
		return err
	}
	f.inv = redis.NewInventory(c)
	f.inv.Namespace = f.namespace
	return f.inv.Open(ctx)
}

// measureLua calls the reserve script on the hot SKU from conns goroutines for
// o.duration.
func measureLua(ctx context.Context, o options, f *fleet, conns int) (result, error) {
	if err := f.openInventory(ctx, conns); err != nil {
		return result{}, fmt.Errorf("lua: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	lats := make([][]time.Duration, conns)
	errs := make([]int64, conns)
	var wg sync.WaitGroup
	began := time.Now()
	for i := range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				if err := f.inv.BareReserve(ctx, "hot", "bench-lua"); err != nil {
					// The calls cut by the end of the measurement are not errors (the
					// socket's deadline may fire before ctx reports it).
					if time.Since(began) < o.duration-50*time.Millisecond {
						errs[i]++
					}
					continue
				}
				lats[i] = append(lats[i], time.Since(start))
			}
		})
	}
	wg.Wait()
	took := time.Since(began)
	var r result
	var all []time.Duration
	for i := range lats {
		all = append(all, lats[i]...)
		r.errors += errs[i]
	}
	if err := r.summarize(all, took); err != nil {
		return r, fmt.Errorf("lua: %w", err)
	}
	return r, nil
}

// measureSpread drives t's request at several base URLs at once, conns split evenly
// between them, and sums the rates; the latencies are the median p50 and the worst p99
// of the parts.
func measureSpread(ctx context.Context, o options, t target, urls []string, conns int) (result, error) {
	parts := make([]result, len(urls))
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	// Each part gets at least one connection, and its share of -rate by connections.
	counts, total := make([]int, len(urls)), 0
	for i := range urls {
		n := conns / len(urls)
		if i < conns%len(urls) {
			n++
		}
		counts[i] = max(n, 1)
		total += counts[i]
	}
	for i, u := range urls {
		tt := t
		tt.url = u
		oo := o
		oo.rate = o.rate * float64(counts[i]) / float64(total)
		wg.Go(func() { parts[i], errs[i] = measure(ctx, oo, tt, counts[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	var r result
	var p50s []float64
	for _, p := range parts {
		r.rate += p.rate
		r.requests += p.requests
		r.errors += p.errors
		r.non2xx += p.non2xx
		r.p99 = max(r.p99, p.p99)
		p50s = append(p50s, float64(p.p50))
	}
	r.p50 = time.Duration(median(p50s))
	return r, nil
}

// uniqueName returns prefix followed by 12 random hex digits.
func uniqueName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
