package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/sqlite"
)

// ledgerCrashDirEnv, when set, makes TestLedgerCrashChild the child of
// TestLedgerCrash: it runs the write path on that data dir until it is killed.
const ledgerCrashDirEnv = "REVGUARD_LEDGER_CRASH_DIR"

// TestLedgerCrash SIGKILLs a process running the journal, the engine and the ledger
// writer under load, many times, at random moments: between journal commits and ledger
// commits, during snapshots and journal compaction. After the last kill the ledger
// catches up and must hold every reservation the engine has, exactly once, in its final
// status, including every change the child acknowledged; and revguard verify must report
// nothing. REVGUARD_LEDGER_CRASH_CYCLES sets the number of kills (default 12).
func TestLedgerCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	cycles := 12
	if v, err := strconv.Atoi(os.Getenv("REVGUARD_LEDGER_CRASH_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	dir := t.TempDir()
	acked := map[string]revguard.Status{} // the latest acknowledged status of each reservation
	for cycle := range cycles {
		lines := runCrashChild(t, dir, time.Duration(100+rand.IntN(300))*time.Millisecond)
		for _, l := range lines {
			id, status, ok := strings.Cut(l, " ")
			if !ok {
				t.Fatalf("cycle %d: bad line %q", cycle, l)
			}
			if s := revguard.Status(status); s != revguard.StatusHeld || acked[id] == "" {
				acked[id] = s
			}
		}
	}
	if len(acked) == 0 {
		t.Fatal("the children acknowledged nothing")
	}

	// Restart once more: recovery, then the ledger catches up with the journal.
	s := openLedgerStack(t, dir, true)
	s.catchUp(t)
	var engine []revguard.Reservation
	s.inv.ForEachReservation(func(r revguard.Reservation) bool { engine = append(engine, r); return true })
	var ledger []revguard.Reservation
	scan, err := s.ledger.Scan(context.Background(), sqlite.ScanFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for scan.Next() {
		ledger = append(ledger, scan.Reservation())
	}
	if err := scan.Err(); err != nil {
		t.Fatal(err)
	}
	scan.Close()
	for _, d := range revguard.DiffLedger(engine, ledger) {
		t.Errorf("after %d crashes: %s", cycles, d)
	}
	inLedger := map[string]revguard.Status{}
	for _, r := range ledger {
		inLedger[r.ID] = r.Status
	}
	for id, want := range acked {
		got, ok := inLedger[id]
		switch {
		case !ok:
			t.Errorf("acknowledged reservation %s is not in the ledger", id)
		case want == revguard.StatusHeld && got == revguard.StatusHeld:
		case want == revguard.StatusHeld && got.Final():
			// A change made durable just before the kill, whose answer never got out.
		case got != want:
			t.Errorf("reservation %s: ledger says %s, the last acknowledged change was %s", id, got, want)
		}
	}
	s.close(t)

	out, errOut, err := runVerify(t, dir)
	if err != nil || out != "" {
		t.Fatalf("revguard verify after %d crashes: %v\n%s", cycles, err, out)
	}
	t.Logf("%d crashes, %d acknowledged reservations, %d in the ledger; %s", cycles, len(acked), len(ledger), strings.TrimSpace(errOut))
}

// runCrashChild runs the child on dir, kills it with SIGKILL after it has worked for
// about d, and returns the complete lines "<id> <status>" it printed: one per
// acknowledged change.
func runCrashChild(t *testing.T, dir string, d time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLedgerCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), ledgerCrashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		lines   []string
		started = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() { // reads the child's output until the pipe closes at its death
		defer close(done)
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			l := sc.Text()
			if l == "ready" {
				once.Do(func() { close(started) })
				continue
			}
			if strings.HasPrefix(l, "ack ") {
				lines = append(lines, strings.TrimPrefix(l, "ack "))
			}
		}
		once.Do(func() { close(started) })
	}()
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child did not start")
	}
	time.Sleep(d)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-done
	cmd.Wait()
	return lines
}

// TestLedgerCrashChild is the child process of TestLedgerCrash; without
// REVGUARD_LEDGER_CRASH_DIR it does nothing.
func TestLedgerCrashChild(t *testing.T) {
	dir := os.Getenv(ledgerCrashDirEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestLedgerCrash")
	}
	s := openLedgerStack(t, dir, false)
	// Small batches: many ledger commits between journal commits. Frequent snapshots:
	// the journal is compacted under the ledger's feet, guarded only by Consumed.
	s.inv.SnapshotEvery = 300
	s.writer = &revguard.LedgerWriter{Feed: s.j, Ledger: s.ledger, BatchSize: 7, Logger: s.inv.Logger}
	go s.writer.Run(context.Background()) // runs until the process is killed

	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	print := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		mu.Unlock()
	}
	ctx := context.Background()
	skus := []string{"crash-a", "crash-b", "crash-c"}
	for _, sku := range skus {
		if _, _, err := s.inv.PutSKU(ctx, sku, revguard.SKUUpdate{Stock: 1_000_000_000, PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
			t.Fatal(err)
		}
	}
	print("ready")
	pid := os.Getpid()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() { // ends only when the process is killed
			for i := 0; ; i++ {
				cust := fmt.Sprintf("p%d-g%d-%d", pid, g, i)
				r, _, err := s.inv.Reserve(ctx, revguard.ReserveRequest{SKU: skus[(g+i)%len(skus)], CustomerID: cust, Quantity: 1})
				if err != nil {
					print("error reserve: %v", err)
					continue
				}
				print("ack %s held", r.ID)
				switch rand.IntN(5) {
				case 0, 1:
					if _, err := s.inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: cust, OrderRef: "o-" + cust}); err == nil {
						print("ack %s confirmed", r.ID)
					}
				case 2:
					if _, err := s.inv.Release(ctx, r.ID, cust); err == nil {
						print("ack %s released", r.ID)
					}
				}
			}
		})
	}
	wg.Wait()
}
