package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// child is the test binary running as `revguard ...` in its own process.
type child struct {
	cmd    *exec.Cmd
	URL    string     // set once it prints its address
	Log    *logBuffer // stderr
	Stdout *logBuffer
	exited chan struct{} // closed when the process has exited and its output is read
	err    error         // cmd.Wait's result, once exited is closed
}

// childEnviron is this process's environment without REVGUARD_ settings, so that the
// child is configured only by what a test gives it, plus the dispatch variable.
func childEnviron(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REVGUARD_") {
			env = append(env, kv)
		}
	}
	return append(append(env, childEnv+"=1"), extra...)
}

// startChild starts the test binary as `revguard args...`. With waitURL it waits for
// the listening line (or the process's exit, an error). env holds extra KEY=value
// settings of the child's environment.
func startChild(args []string, waitURL bool, env ...string) (*child, error) {
	return startChildIn("", args, waitURL, env...)
}

// startChildIn is startChild with the working directory dir ("" for this process's).
func startChildIn(dir string, args []string, waitURL bool, env ...string) (*child, error) {
	c := &child{Log: newLogBuffer(), Stdout: newLogBuffer(), exited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], args...)
	c.cmd.Dir = dir
	c.cmd.Env = childEnviron(env...)
	c.cmd.Stderr = c.Log
	c.cmd.Stdout = c.Stdout
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	// Waits for the process; exits when it does (a test kills any child it leaves).
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	if !waitURL {
		return c, nil
	}
	select {
	case c.URL = <-c.Log.url:
		return c, nil
	case <-c.exited:
		return c, fmt.Errorf("exited before listening: %v", c.err)
	case <-time.After(60 * time.Second):
		c.kill()
		return c, errors.New("no address line within 60 s")
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

// wait waits up to d for the process to exit and returns its exit code, or -1 after
// killing it when it did not exit in time.
func (c *child) wait(d time.Duration) int {
	select {
	case <-c.exited:
	case <-time.After(d):
		c.kill()
		return -1
	}
	return c.cmd.ProcessState.ExitCode()
}

// crashServeArgs are the serve flags of the crash test's server on dir.
func crashServeArgs(dir string) []string {
	return []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--admin-token", testAdminToken,
		"--rate-limit-customer", "off", "--rate-limit-ip", "off", "--log-level", "warn"}
}

// crashSKU is a SKU of the crash test. The small one sells out, so that refusals and
// releases giving units back are part of the load.
type crashSKU struct {
	id    string
	stock int64
}

var crashSKUs = []crashSKU{{"crash-big", 1_000_000}, {"crash-small", 150}, {"crash-mid", 5_000}}

// tracked is what the client knows about one reservation: the last state the API
// acknowledged, and a change it asked for without getting the answer (the server died).
type tracked struct {
	sku     string
	qty     int64
	acked   string // held, confirmed or released
	pending string // "", "confirmed" or "released"
}

// crashClient drives load and remembers every acknowledged change.
type crashClient struct {
	mu     sync.Mutex
	res    map[string]*tracked // reservation id → state
	dirty  map[string]bool     // ids changed or asked to change since the last check
	tokens []string            // customers' sessions, all acknowledged
	acks   int
}

// TestCrash runs the real binary as a child process under load, SIGKILLs it at random
// moments and restarts it on the same data dir: every acknowledged (201/200) change must
// be there after the restart, the counts must add up, and at the end the ledger must
// equal the engine's state, each reservation once.
func TestCrash(t *testing.T) {
	cycles := 20
	if s := os.Getenv("REVGUARD_CRASH_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("REVGUARD_CRASH_CYCLES=%q: want a positive integer", s)
		}
		cycles = n
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d cycles", seed, cycles)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	dir := t.TempDir()
	cc := &crashClient{res: map[string]*tracked{}, dirty: map[string]bool{}}

	for cycle := range cycles {
		cc.runCycle(t, dir, cycle, seed, time.Duration(20+rng.IntN(250))*time.Millisecond)
	}

	// A last start: everything acknowledged is there, and the ledger converges on the
	// engine's state.
	ch, err := startChild(crashServeArgs(dir), true)
	if err != nil {
		t.Fatalf("final start: %v\n%s", err, ch.Log)
	}
	defer ch.kill()
	c := newClient(t, ch.URL, 32)
	cc.check(t, c, cycles)
	cc.checkLedger(t, c)
	ch.cmd.Process.Signal(syscall.SIGTERM)
	if code := ch.wait(30 * time.Second); code != 0 {
		t.Errorf("SIGTERM: exit code %d, want 0\n%s", code, ch.Log)
	}
	// revguard verify compares the whole engine with the ledger offline, including
	// reservations whose 201 was lost in a crash and which the client never saw.
	var out strings.Builder
	if err := run(t.Context(), []string{"verify", "--data-dir", dir}, envMap(nil), &out, &out); err != nil {
		t.Errorf("revguard verify after %d crashes: %v\n%s", cycles, err, out.String())
	}
	if t.Failed() {
		if keep := os.Getenv("REVGUARD_CRASH_KEEP"); keep != "" {
			if err := os.CopyFS(keep, os.DirFS(dir)); err != nil {
				t.Log(err)
			}
			t.Logf("data dir copied to %s", keep)
		}
	}
	t.Logf("%d acknowledged changes over %d kills, %d reservations", cc.acks, cycles, len(cc.res))
	if cc.acks < cycles {
		t.Errorf("only %d acknowledged changes in %d cycles: the load did not run", cc.acks, cycles)
	}
}

// runCycle starts the server on dir, checks what the last cycle acknowledged, runs the
// load for killAfter and SIGKILLs the server.
func (cc *crashClient) runCycle(t *testing.T, dir string, cycle int, seed uint64, killAfter time.Duration) {
	ch, err := startChild(crashServeArgs(dir), true)
	if err != nil {
		t.Fatalf("cycle %d: start: %v\n%s", cycle, err, ch.Log)
	}
	defer func() {
		if t.Failed() {
			ch.kill()
			t.Logf("cycle %d: server log:\n%s", cycle, ch.Log)
		}
	}()
	c := newClient(t, ch.URL, 32)
	if cycle == 0 {
		for _, s := range crashSKUs {
			c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/"+s.id, testAdminToken,
				map[string]any{"stock": s.stock, "per_customer_limit": 1_000_000})
		}
		for i := range 16 {
			cc.tokens = append(cc.tokens, c.mustSession(t, fmt.Sprintf("crasher-%02d", i)))
		}
	}
	cc.check(t, c, cycle)

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w, tok := range cc.tokens {
		wg.Go(func() { cc.drive(ctx, c, tok, rand.New(rand.NewPCG(seed+uint64(cycle), uint64(w)))) })
	}
	time.Sleep(killAfter)
	ch.kill() // SIGKILL, whatever is in flight
	stop()
	wg.Wait()
	if ch.cmd.ProcessState.ExitCode() != -1 {
		t.Fatalf("cycle %d: the server exited by itself (%v)", cycle, ch.err)
	}
}

// drive runs one customer's load until ctx ends or the server stops answering.
func (cc *crashClient) drive(ctx context.Context, c *apiClient, token string, rng *rand.Rand) {
	var mine []string // this customer's held reservations
	for ctx.Err() == nil {
		op := rng.IntN(10)
		if len(mine) == 0 || op < 5 {
			sku := crashSKUs[rng.IntN(len(crashSKUs))]
			qty := int64(1 + rng.IntN(3))
			r, err := c.do(ctx, "POST", "/v1/skus/"+sku.id+"/reservations", token, map[string]any{"quantity": qty})
			if err != nil {
				return
			}
			switch r.Status {
			case http.StatusCreated:
				var res reservationJSON
				if err := json.Unmarshal(r.Body, &res); err != nil || res.ID == "" {
					cc.unexpected(r)
					return
				}
				cc.ack(res.ID, &tracked{sku: sku.id, qty: qty, acked: "held"})
				mine = append(mine, res.ID)
			case http.StatusConflict: // sold out
			default:
				cc.unexpected(r)
				return
			}
			continue
		}
		i := rng.IntN(len(mine))
		id := mine[i]
		mine = append(mine[:i], mine[i+1:]...)
		to, action := "confirmed", "/confirm"
		if op >= 8 {
			to, action = "released", "/release"
		}
		cc.setPending(id, to)
		r, err := c.do(ctx, "POST", "/v1/reservations/"+id+action, token, nil)
		if err != nil {
			return // the change may or may not have happened: check accepts both
		}
		if r.Status != http.StatusOK {
			cc.unexpected(r)
			return
		}
		cc.ack(id, nil)
	}
}

// unexpected records an answer the load never expects; check reports it.
func (cc *crashClient) unexpected(r *apiResponse) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.res["unexpected answer: "+r.String()] = &tracked{acked: "unexpected"}
}

// ack records an acknowledged change: a new reservation t, or (t nil) the pending
// change of id.
func (cc *crashClient) ack(id string, t *tracked) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.acks++
	cc.dirty[id] = true
	if t != nil {
		cc.res[id] = t
		return
	}
	r := cc.res[id]
	r.acked, r.pending = r.pending, ""
}

func (cc *crashClient) setPending(id, to string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.res[id].pending = to
	cc.dirty[id] = true
}

// check verifies, on a freshly restarted server, every reservation changed since the
// last check, then the counts of every SKU.
func (cc *crashClient) check(t *testing.T, c *apiClient, cycle int) {
	t.Helper()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for id, r := range cc.res {
		if r.acked == "unexpected" {
			t.Fatalf("cycle %d: %s", cycle, id)
		}
	}
	ids := make([]string, 0, len(cc.dirty))
	for id := range cc.dirty {
		ids = append(ids, id)
	}
	var mu sync.Mutex
	parallel(t, len(ids), 16, func(i int) error {
		id := ids[i]
		var got reservationJSON
		r, err := c.do(t.Context(), "GET", "/v1/reservations/"+id, testAdminToken, nil)
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &got) != nil {
			return fmt.Errorf("cycle %d: acknowledged reservation %s: %s", cycle, id, r)
		}
		mu.Lock()
		defer mu.Unlock()
		tr := cc.res[id]
		if got.Status != tr.acked && got.Status != tr.pending {
			return fmt.Errorf("cycle %d: reservation %s is %s; acknowledged %s, pending %q", cycle, id, got.Status, tr.acked, tr.pending)
		}
		tr.acked, tr.pending = got.Status, ""
		return nil
	})
	clear(cc.dirty)

	for _, s := range crashSKUs {
		var sku skuJSON
		c.must(t, http.StatusOK, &sku, "GET", "/v1/skus/"+s.id, testAdminToken, nil)
		var held, sold int64 // lower bounds: a reservation whose 201 was lost is unknown here
		for _, r := range cc.res {
			if r.sku != s.id {
				continue
			}
			switch r.acked {
			case "held":
				held += r.qty
			case "confirmed":
				sold += r.qty
			}
		}
		if sku.Stock != s.stock || sku.Available < 0 || sku.Held < held || sku.Sold < sold ||
			sku.Available+sku.Held+sku.Sold != sku.Stock {
			t.Fatalf("cycle %d: SKU %+v breaks the invariant or lost acknowledged units (held ≥ %d, sold ≥ %d)", cycle, sku, held, sold)
		}
	}
}

// checkLedger waits for the ledger to equal the engine: every reservation of the engine
// (known to the client or not) once, with the engine's status, and counts that match
// each SKU's held and sold. A reservation whose 201 was lost in a crash is unknown to
// the client: until the ledger lists it, only the counts show it, so they are part of
// the convergence condition rather than checked once.
func (cc *crashClient) checkLedger(t *testing.T, c *apiClient) {
	for _, s := range crashSKUs {
		want := map[string]string{}
		for id, r := range cc.res {
			if r.sku == s.id {
				want[id] = r.acked
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			items, err := c.allOrders(t.Context(), "sku="+s.id)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				if _, ok := want[it.ID]; !ok { // ask the engine about ids the client never saw
					var got reservationJSON
					c.must(t, http.StatusOK, &got, "GET", "/v1/reservations/"+it.ID, testAdminToken, nil)
					want[it.ID] = got.Status
				}
			}
			var sku skuJSON
			c.must(t, http.StatusOK, &sku, "GET", "/v1/skus/"+s.id, testAdminToken, nil)
			var held, sold int64
			for _, it := range items {
				switch it.Status {
				case "held":
					held += it.Quantity
				case "confirmed":
					sold += it.Quantity
				}
			}
			diff := ledgerDiff(items, want)
			if held != sku.Held || sold != sku.Sold {
				diff += fmt.Sprintf("; the ledger holds %d held and %d sold units, the engine %+v", held, sold, sku)
			}
			if diff == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SKU %s: the ledger did not converge on the engine within 30 s: %s", s.id, diff)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
