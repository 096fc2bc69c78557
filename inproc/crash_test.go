package inproc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
)

// The crash test runs the engine in a child process (this test binary again, told so
// by crashChildEnv), under load from many goroutines. The child prints one line per
// change after the call that made it returned (so only acknowledged changes are
// printed); the parent SIGKILLs it at a random moment, reopens the data, and checks
// that every acknowledged change is there and the invariants hold.
const (
	crashChildEnv  = "REVGUARD_INPROC_CRASH_DIR"
	crashCyclesEnv = "REVGUARD_CRASH_CYCLES" // default 20
	crashSKUs      = 4
	crashStock     = 400
	crashLimit     = 4
	crashCustomers = 60
)

func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir) // runs until killed
		return
	}
	if testing.Short() {
		t.Skip("crash test: not in -short mode")
	}
	cycles := 20
	if s := os.Getenv(crashCyclesEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", crashCyclesEnv, s)
		}
		cycles = n
	}
	dir := t.TempDir()
	e, err := openEngine(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range crashSKUs {
		if _, _, err := e.Inv.PutSKU(t.Context(), crashSKU(i), revguard.SKUUpdate{Stock: crashStock, PerCustomerLimit: crashLimit, HoldSeconds: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.close(); err != nil {
		t.Fatal(err)
	}

	acked := make(map[string]*crashAck)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	total := 0
	for cycle := range cycles {
		lines, stderr := runCrashChild(t, dir, time.Duration(20+rng.IntN(250))*time.Millisecond)
		n, err := parseAcks(lines, acked)
		if err != nil {
			t.Fatalf("cycle %d: %v\nchild stderr:\n%s", cycle, err, stderr)
		}
		total += n
		// The parent's clock stands still, so that no hold expires between the reads
		// of the check (the child's holds last one second).
		frozen := time.Now()
		e, err := openEngine(dir, func() time.Time { return frozen }, nil)
		if err != nil {
			t.Fatalf("cycle %d: recover: %v", cycle, err)
		}
		checkCrashState(t, cycle, e.Inv, acked)
		// Restock half of what was sold, so that the load keeps reserving.
		for i := range crashSKUs {
			s, err := e.Inv.FindSKU(t.Context(), crashSKU(i))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.Inv.PutSKU(t.Context(), s.ID, revguard.SKUUpdate{Stock: s.Stock + s.Sold/2, PerCustomerLimit: crashLimit, HoldSeconds: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.close(); err != nil {
			t.Fatalf("cycle %d: close: %v", cycle, err)
		}
	}
	if total == 0 {
		t.Fatal("the children acknowledged no change at all")
	}
	t.Logf("%d cycles, %d acknowledged changes, %d reservations checked", cycles, total, len(acked))
}

func crashSKU(i int) string { return fmt.Sprintf("crash-%d", i) }

// runCrashChild starts the child on dir, kills it with SIGKILL after it has run for
// d, and returns the complete lines it printed.
func runCrashChild(t *testing.T, dir string, d time.Duration) ([]string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	ready := make(chan struct{})
	done := make(chan struct{})
	// The reader goroutine exits at EOF, when the killed child's stdout closes.
	go func() {
		defer close(done)
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			if err != nil { // EOF; a line without its newline was never complete
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "ready" {
				close(ready)
				continue
			}
			lines = append(lines, line)
		}
	}()
	select {
	case <-ready:
	case <-done:
		cmd.Wait()
		t.Fatalf("child exited before it was ready: %s", stderr.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("child not ready after 30s: %s", stderr.String())
	}
	time.Sleep(d)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-done
	cmd.Wait()
	return lines, stderr.String()
}

// crashAck is what the children acknowledged about one reservation.
type crashAck struct {
	sku, customer string
	qty           int64
	final         revguard.Status // "" while only the reserve was acknowledged
}

// parseAcks adds the child's lines to acked: "R id sku customer qty" (reserved),
// "C id" (confirmed), "V id" (revived), "L id" (released).
func parseAcks(lines []string, acked map[string]*crashAck) (int, error) {
	n := 0
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "R" && len(f) == 5:
			qty, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil || acked[f[1]] != nil {
				return n, fmt.Errorf("bad or repeated reserve line %q", line)
			}
			acked[f[1]] = &crashAck{sku: f[2], customer: f[3], qty: qty}
		case (f[0] == "C" || f[0] == "V" || f[0] == "L") && len(f) == 2:
			a := acked[f[1]]
			if a == nil {
				return n, fmt.Errorf("%q for a reservation never acknowledged", line)
			}
			a.final = revguard.StatusConfirmed
			if f[0] == "L" {
				a.final = revguard.StatusReleased
			}
		default:
			continue // the test framework's own output
		}
		n++
	}
	return n, nil
}

// checkCrashState checks the recovered engine against everything acknowledged.
func checkCrashState(t *testing.T, cycle int, inv *inproc.Inventory, acked map[string]*crashAck) {
	t.Helper()
	ctx := t.Context()
	for i := range crashSKUs { // expire what is due at the frozen time
		if _, err := inv.FindSKU(ctx, crashSKU(i)); err != nil {
			t.Fatal(err)
		}
	}
	for id, a := range acked {
		r, err := inv.FindReservation(ctx, id)
		if err != nil {
			t.Fatalf("cycle %d: acknowledged reservation %s lost: %v", cycle, id, err)
		}
		if r.SKU != a.sku || r.CustomerID != a.customer || r.Quantity != a.qty {
			t.Fatalf("cycle %d: reservation %s is %s/%s/%d, acknowledged as %s/%s/%d", cycle, id, r.SKU, r.CustomerID, r.Quantity, a.sku, a.customer, a.qty)
		}
		if a.final != "" && r.Status != a.final {
			t.Fatalf("cycle %d: reservation %s is %s, acknowledged %s", cycle, id, r.Status, a.final)
		}
	}
	// Nothing half applied: each SKU's counts are exactly the sums of its
	// reservations, and no customer is over the limit.
	held := make(map[string]int64)
	sold := make(map[string]int64)
	owned := make(map[string]int64)
	inv.ForEachReservation(func(r revguard.Reservation) bool {
		switch r.Status {
		case revguard.StatusHeld:
			held[r.SKU] += r.Quantity
		case revguard.StatusConfirmed:
			sold[r.SKU] += r.Quantity
		}
		if r.Status.Counts() {
			owned[r.SKU+"/"+r.CustomerID] += r.Quantity
		}
		return true
	})
	inv.ForEachSKU(func(s revguard.SKU) bool {
		if s.Available < 0 || s.Held != held[s.ID] || s.Sold != sold[s.ID] || s.Available+s.Held+s.Sold != s.Stock {
			t.Errorf("cycle %d: SKU %+v; its reservations hold %d and sold %d", cycle, s, held[s.ID], sold[s.ID])
		}
		return true
	})
	for k, n := range owned {
		if n > crashLimit {
			t.Errorf("cycle %d: %s holds or owns %d units, over the limit %d", cycle, k, n, crashLimit)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// crashChild is the child process: it serves load on dir until it is killed.
func crashChild(dir string) {
	e, err := openEngine(dir, nil, func(inv *inproc.Inventory) {
		inv.SnapshotEvery = 300 // snapshots (and kills during them) happen under load
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(2)
	}
	// A follower that consumes everything, so that snapshots compact the journal. It
	// runs until the parent kills the process, like the load goroutines.
	go func() {
		for {
			time.Sleep(5 * time.Millisecond)
			e.J.Consumed(e.J.Durable())
		}
	}()
	os.Stdout.WriteString("ready\n")
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() { crashLoad(e.Inv, g) })
	}
	wg.Wait()
}

// crashLoad is one goroutine of the child's load; it never returns.
func crashLoad(inv *inproc.Inventory, g int) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
	ack := func(format string, args ...any) { // one write(2) per line: never interleaved
		io.WriteString(os.Stdout, fmt.Sprintf(format, args...))
	}
	var expired []revguard.Reservation
	for {
		skuID := crashSKU(rng.IntN(crashSKUs))
		// Fresh customers in each child: confirmed units count against the limit forever.
		customer := fmt.Sprintf("c%d-%d", os.Getpid(), rng.IntN(crashCustomers))
		r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: skuID, CustomerID: customer, Quantity: 1 + rng.Int64N(2)})
		if err != nil { // sold out or over the limit: wait for expiries and restocks
			time.Sleep(time.Millisecond)
			continue
		}
		ack("R %s %s %s %d\n", r.ID, r.SKU, r.CustomerID, r.Quantity)
		switch p := rng.IntN(10); {
		case p < 4:
			if _, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: customer, OrderRef: "o"}); err == nil {
				ack("C %s\n", r.ID)
			}
		case p < 7:
			if _, err := inv.Release(ctx, r.ID, customer); err == nil {
				ack("L %s\n", r.ID)
			}
		default:
			expired = append(expired, r) // left to expire; revived later, maybe
		}
		if len(expired) > 0 && rng.IntN(4) == 0 {
			x := expired[0]
			expired = expired[1:]
			if _, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: x.ID, CustomerID: x.CustomerID, Revive: true}); err == nil {
				ack("V %s\n", x.ID)
			}
		}
		if rng.IntN(50) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}
