package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/sqlite"
)

// VerifyCommand is `revguard verify`: it compares the ledger with the state of the
// serialisation points (the engine, rebuilt read-only from the snapshots and the
// journal) and prints every difference. It fails, so that the binary exits 1, on any
// difference, or when the ledger does not catch up with the engine in time.
//
// Both sides are compared at the same journal position E, the engine's: verify waits
// until the ledger has applied every event up to E, then reads one snapshot of the
// ledger, and leaves out the reservations whose ledger row a later event changed (their
// row's seq is above E) — beside a running server the ledger moves on meanwhile. Every
// other reservation must be in both, once, with equal fields.
//
// It also checks the whole ledger on its own: at no instant may the reservations it
// records as held or sold (revguard.HeldIntervals) add up to more units than the
// stock in force, which the SKUs' history of puts gives. It reports the first instant
// that fails, naming the SKU, the units, the stock and the reservations in force.
type VerifyCommand struct {
	Getenv         func(string) string
	Stdout, Stderr io.Writer

	// Poll is how often the ledger's position is read while waiting; default 50ms.
	Poll time.Duration
}

// Usage returns the help of `revguard verify`.
func (c *VerifyCommand) Usage() string {
	return `Usage: revguard verify [flags]

Compares the ledger (<data-dir>/revguard.db) with the reservation engine's state, rebuilt
read-only from <data-dir>/snapshots and <data-dir>/journal, and prints every difference
(missing, extra, duplicate, or a field that differs), one per line. Then checks that the
ledger never shows more units held or sold than the stock at any instant (from each
reservation's created_at, released_at, expires_at and confirmed_at, and each SKU's stock
history), and prints the first instant that does, with its SKU, units, stock and the
reservations in force. Exits 1 on any difference or such instant, or when the ledger is
still behind the engine after --wait (a stopped server's ledger catches up when the server
starts again). Writes nothing: run it on a stopped server's data or beside a running
server.

Flags:
  --data-dir dir
      embedded mode's files, as given to revguard serve
      env REVGUARD_DATA_DIR; default: ./revguard-data
  --wait duration
      how long to wait for the ledger to catch up with the engine; default: 10s
  --retention duration
      the server's --retention: a reservation final for longer has left the engine's
      memory and is in the ledger only; at least 24h
      env REVGUARD_RETENTION; default: 25h
  --redis-url, --postgres-url url; --redis-namespace, --postgres-schema name
      distributed mode (env REVGUARD_REDIS_URL, REVGUARD_POSTGRES_URL,
      REVGUARD_REDIS_NAMESPACE, REVGUARD_POSTGRES_SCHEMA): compare the fleet's engine
      state in Redis with its PostgreSQL ledger instead of --data-dir (not both on
      the command line)
`
}

// Run verifies the ledger.
func (c *VerifyCommand) Run(ctx context.Context, args []string) error {
	dataDir := "./revguard-data"
	wait := 10 * time.Second
	fs := flag.NewFlagSet("revguard verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	stores := bindStoreFlags(fs, &dataDir, c.Getenv)
	fs.DurationVar(&wait, "wait", wait, "how long to wait for the ledger")
	retention := revguard.DefaultRetention
	if v := c.Getenv("REVGUARD_RETENTION"); v != "" { // as serve reads it; the flag wins
		if err := (durationValue{&retention}).Set(v); err != nil {
			return usageErrorf("verify: REVGUARD_RETENTION: %v", err)
		}
	}
	fs.DurationVar(&retention, "retention", retention, "the server's --retention")
	if err := parseFlags(fs, "verify", args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.Stdout, c.Usage())
		}
		return err
	}
	if err := stores.check("verify", true); err != nil {
		return err
	}
	if wait < 0 {
		return usageErrorf("verify: --wait must not be negative")
	}
	if retention < revguard.MinRetention {
		return usageErrorf("verify: --retention must be at least %v, as the server's", revguard.MinRetention)
	}
	if stores.distributed() {
		return c.runDistributed(ctx, stores, wait, retention) // verify_distributed.go
	}

	quiet := slog.New(slog.DiscardHandler)
	journalDir := filepath.Join(dataDir, journalDirName)
	if _, err := os.Stat(journalDir); err != nil {
		return fmt.Errorf("verify: no journal at %s (is --data-dir right?): %w", journalDir, err)
	}
	j := journal.New(journalDir)
	j.ReadOnly = true
	j.Logger = quiet
	if err := j.Open(ctx); err != nil {
		return fmt.Errorf("verify: open journal: %w", err)
	}
	defer j.Close()
	inv := inproc.NewInventory(j, filepath.Join(dataDir, snapshotsDirName))
	inv.ReadOnly = true
	inv.Logger = quiet
	if err := inv.Open(ctx); err != nil {
		return fmt.Errorf("verify: open engine: %w", err)
	}
	defer inv.Close()
	engineSeq := inv.AppliedSeq()

	db, err := openLedgerReadOnly(ctx, dataDir)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer db.Close()
	ledger := sqlite.NewLedger(db)
	if err := c.waitLedger(ctx, ledger, engineSeq, wait); err != nil {
		return err
	}

	scan, err := ledger.Scan(ctx, sqlite.ScanFilter{StockHistory: true})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer scan.Close()
	var ledgerRows []revguard.Reservation
	newer := map[string]bool{} // changed after the engine's position: not comparable
	for scan.Next() {
		if scan.Seq() > engineSeq {
			newer[scan.Reservation().ID] = true
		}
		ledgerRows = append(ledgerRows, scan.Reservation())
	}
	if err := scan.Err(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	// The whole snapshot of the ledger, newer rows included, against its stock history;
	// then only the rows comparable with the engine.
	overlap := revguard.CheckHeldWithinStock(ledgerRows, scan.StockHistory())
	ledgerRows = slices.DeleteFunc(ledgerRows, func(r revguard.Reservation) bool { return newer[r.ID] })
	var engineRows []revguard.Reservation
	inEngine := map[string]bool{}
	inv.ForEachReservation(func(r revguard.Reservation) bool {
		inEngine[r.ID] = true
		if !newer[r.ID] {
			engineRows = append(engineRows, r)
		}
		return true
	})
	// A reservation final for longer than the retention has left the engine's memory
	// (the ledger answers for it): it is in the ledger only, and not compared.
	archivedBefore := time.Now().Add(-retention - purgeSlack)
	archived := 0
	ledgerRows = slices.DeleteFunc(ledgerRows, func(r revguard.Reservation) bool {
		if !inEngine[r.ID] && r.Status.Final() && finalAt(r).Before(archivedBefore) {
			archived++
			return true
		}
		return false
	})

	diffs := revguard.DiffLedger(engineRows, ledgerRows)
	for _, d := range diffs {
		fmt.Fprintln(c.Stdout, d)
	}
	if overlap != nil {
		fmt.Fprintf(c.Stdout, "more units held or sold than the stock: %s\n", overlap)
	}
	var failed []string
	if len(diffs) > 0 {
		failed = append(failed, fmt.Sprintf("%d differences between the ledger and the engine at journal seq %d", len(diffs), engineSeq))
	}
	if overlap != nil {
		failed = append(failed, fmt.Sprintf("the ledger shows %d units of SKU %s held or sold at %s with a stock of %d",
			overlap.Units, overlap.SKU, overlap.At.UTC().Format(time.RFC3339Nano), overlap.Stock))
	}
	if len(failed) > 0 {
		return fmt.Errorf("verify: %s", strings.Join(failed, "; "))
	}
	fmt.Fprintf(c.Stderr, "verify: ledger matches the engine: %d reservations at journal seq %d", len(engineRows), engineSeq)
	if len(newer) > 0 {
		fmt.Fprintf(c.Stderr, " (%d changed since, not compared)", len(newer))
	}
	if archived > 0 {
		fmt.Fprintf(c.Stderr, " (%d final for longer than the retention, in the ledger only, not compared)", archived)
	}
	fmt.Fprintln(c.Stderr)
	fmt.Fprintf(c.Stderr, "verify: at no instant more units held or sold than the stock (%d reservations, %d stock settings)\n",
		len(ledgerRows)+len(newer)+archived, len(scan.StockHistory()))
	return nil
}

// waitLedger waits until the ledger has applied every event up to seq, for at most
// wait.
func (c *VerifyCommand) waitLedger(ctx context.Context, l *sqlite.Ledger, seq uint64, wait time.Duration) error {
	poll := c.Poll
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	deadline := time.Now().Add(wait)
	for {
		last, err := l.LastApplied(ctx)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if last >= seq {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("verify: the ledger has applied events up to seq %d, the engine is at %d, still behind after %s: "+
				"a running server's ledger writer may be failing (see its log and ledger lag metrics); "+
				"a stopped server's ledger catches up when revguard serve starts again", last, seq, wait)
		}
		t := time.NewTimer(min(poll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("verify: %w", ctx.Err())
		case <-t.C:
		}
	}
}
