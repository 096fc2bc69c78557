package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/sqlite"
)

// runVerify runs `revguard verify args` on dir and returns stdout and stderr.
func runVerify(t *testing.T, dir string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &VerifyCommand{
		Getenv: envMap(map[string]string{"REVGUARD_DATA_DIR": dir}),
		Stdout: &stdout, Stderr: &stderr,
		Poll: 5 * time.Millisecond,
	}
	err := c.Run(context.Background(), args)
	return stdout.String(), stderr.String(), err
}

// tamper runs SQL statements on the ledger file of dir, as a damaged ledger would look.
func tamper(t *testing.T, dir string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, dbFileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestVerify(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		dir := t.TempDir()
		s := openLedgerStack(t, dir, true)
		s.sale(t, "shoe", 9)
		s.catchUp(t)
		s.close(t)
		out, errOut, err := runVerify(t, dir)
		if err != nil || out != "" {
			t.Fatalf("verify: %v\n%s", err, out)
		}
		if !strings.Contains(errOut, "matches the engine: 9 reservations") {
			t.Errorf("stderr %q", errOut)
		}
	})

	t.Run("BesideRunningServer", func(t *testing.T) {
		dir := t.TempDir()
		s := openLedgerStack(t, dir, true)
		s.sale(t, "a", 6)
		s.catchUp(t)
		done := make(chan error)
		go func() { // started here, ends with the sale; the test waits for it
			_, err := s.trySale("b", 30)
			done <- err
		}()
		out, _, err := runVerify(t, dir, "--wait", "20s")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatalf("verify beside a running server: %v\n%s", err, out)
		}
	})

	t.Run("ErrDifferences", func(t *testing.T) {
		dir := t.TempDir()
		s := openLedgerStack(t, dir, true)
		rs := s.sale(t, "shoe", 6) // 0 confirmed, 1 released, 2 held, 3 confirmed, ...
		s.catchUp(t)
		s.close(t)
		tamper(t, dir,
			`UPDATE reservations SET status = 'held', confirmed_at = NULL WHERE id = '`+rs[0].ID+`'`,
			`DELETE FROM reservations WHERE id = '`+rs[1].ID+`'`,
			`UPDATE reservations SET quantity = 2 WHERE id = '`+rs[2].ID+`'`,
			`INSERT INTO reservations (id, sku, customer_id, quantity, status, created_at, expires_at, seq)
				VALUES ('01ZZZZZZZZZZZZZZZZZZZZZZZZ', 'shoe', 'ghost', 1, 'held', 0, 0, 1)`,
		)
		out, _, err := runVerify(t, dir)
		if err == nil || !strings.Contains(err.Error(), "5 differences") {
			t.Fatalf("verify of a damaged ledger: %v\n%s", err, out)
		}
		for _, want := range []string{
			rs[0].ID + ": status differs: engine confirmed, ledger held",
			rs[0].ID + ": confirmed_at differs: engine " + formatTime(rs[0].ConfirmedAt) + ", ledger null",
			rs[1].ID + ": missing from the ledger",
			rs[2].ID + ": quantity differs: engine 1, ledger 2",
			"01ZZZZZZZZZZZZZZZZZZZZZZZZ: in the ledger but not in the engine",
		} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if _, ok := errors.AsType[*usageError](err); ok {
			t.Error("a difference is not a usage error (exit 1, not 2)")
		}
	})

	// A reservation final for longer than the retention has left the engine's memory:
	// in the ledger only, it is not a difference; a recent one is.
	t.Run("OK_ArchivedNotCompared", func(t *testing.T) {
		dir := t.TempDir()
		s := openLedgerStack(t, dir, true)
		s.sale(t, "shoe", 3)
		s.catchUp(t)
		s.close(t)
		old := time.Now().Add(-72 * time.Hour).UnixNano()
		recent := time.Now().Add(-time.Hour).UnixNano()
		tamper(t, dir,
			fmt.Sprintf(`INSERT INTO sku_history (sku, seq, time, stock, per_customer_limit, hold_seconds) VALUES ('old', 1, %d, 2, 1, 1)`, old-1e9),
			fmt.Sprintf(`INSERT INTO reservations (id, sku, customer_id, quantity, status, created_at, expires_at, released_at, seq)
				VALUES ('01AAAAAAAAAAAAAAAAAAAAAAAA', 'old', 'zed', 1, 'released', %d, %d, %d, 1)`, old, old+1e9, old+1e8),
		)
		out, errOut, err := runVerify(t, dir)
		if err != nil || out != "" {
			t.Fatalf("verify with a reservation that left memory long ago: %v\n%s", err, out)
		}
		if !strings.Contains(errOut, "1 final for longer than the retention, in the ledger only, not compared") {
			t.Errorf("stderr %q", errOut)
		}
		tamper(t, dir,
			fmt.Sprintf(`INSERT INTO reservations (id, sku, customer_id, quantity, status, created_at, expires_at, released_at, seq)
				VALUES ('01BBBBBBBBBBBBBBBBBBBBBBBB', 'old', 'zed', 1, 'released', %d, %d, %d, 1)`, recent, recent+1e9, recent+1e8),
		)
		out, _, err = runVerify(t, dir)
		if err == nil || !strings.Contains(out, "01BBBBBBBBBBBBBBBBBBBBBBBB: in the ledger but not in the engine") {
			t.Fatalf("verify with a recent reservation in the ledger only: %v\n%s", err, out)
		}
	})

	// Hand-made data dirs, the journal and the ledger holding the same events: the
	// engine and the ledger agree, and only the times tell an overlap.
	t.Run("OK_HandMade", func(t *testing.T) {
		dir := t.TempDir()
		writeDataDir(t, dir, handMadeSale(12)) // B taken after A expired
		out, errOut, err := runVerify(t, dir)
		if err != nil || out != "" {
			t.Fatalf("verify of a clean hand-made ledger: %v\n%s", err, out)
		}
		if !strings.Contains(errOut, "at no instant more units held or sold than the stock (2 reservations, 1 stock settings)") {
			t.Errorf("stderr %q", errOut)
		}
	})

	t.Run("ErrOverlap", func(t *testing.T) {
		dir := t.TempDir()
		// B stamped 5 s into the sale, before A's deadline at 11 s, though applied after
		// A expired: as the engine did.
		writeDataDir(t, dir, handMadeSale(5))
		out, _, err := runVerify(t, dir)
		want := "SKU shoe: 2 units held or sold at " + formatTime(handMadeT0.Add(5*time.Second)) +
			", stock 1: reservations " + handMadeB + ", " + handMadeA
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("verify of an overlapping ledger: %v\n%s\nwant a line with %q", err, out, want)
		}
		if !strings.Contains(err.Error(), "2 units of SKU shoe held or sold at") || strings.Contains(err.Error(), "differences") {
			t.Errorf("error %q", err)
		}
		var stdout, stderr bytes.Buffer
		if code := exitCode(run(context.Background(), []string{"verify", "--data-dir", dir}, envMap(nil), &stdout, &stderr)); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
	})

	t.Run("ErrBehind", func(t *testing.T) {
		dir := t.TempDir()
		s := openLedgerStack(t, dir, true)
		s.sale(t, "a", 3)
		s.catchUp(t)
		s.close(t)
		s = openLedgerStack(t, dir, false) // the ledger does not follow: it falls behind
		s.sale(t, "b", 3)
		s.close(t)
		_, _, err := runVerify(t, dir, "--wait", "50ms")
		if err == nil || !strings.Contains(err.Error(), "behind") {
			t.Fatalf("verify of a lagging ledger: %v", err)
		}
		// Once the ledger catches up (the server starts again), verify passes.
		s = openLedgerStack(t, dir, true)
		s.catchUp(t)
		s.close(t)
		if out, _, err := runVerify(t, dir); err != nil {
			t.Fatalf("verify after catching up: %v\n%s", err, out)
		}
	})

	t.Run("ErrUsage", func(t *testing.T) {
		for _, args := range [][]string{{"--wait", "soon"}, {"--wait", "-1s"}, {"--nope"}, {"x"}, {"--redis-url", "redis://127.0.0.1:6379/0"},
			{"--retention", "1s"}, {"--retention", "-2h"}, // the server takes at least 24h
			{"--data-dir", "d", "--redis-url", "redis://127.0.0.1:6379/0", "--postgres-url", "postgres://127.0.0.1/x"}} {
			_, _, err := runVerify(t, t.TempDir(), args...)
			if _, ok := errors.AsType[*usageError](err); !ok {
				t.Errorf("verify %q: %v, want a usage error", args, err)
			}
		}
	})

	t.Run("ErrNoData", func(t *testing.T) {
		if _, _, err := runVerify(t, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no journal") {
			t.Fatalf("verify of an empty dir: %v", err)
		}
	})

	t.Run("Help", func(t *testing.T) {
		out, _, err := runVerify(t, t.TempDir(), "-h")
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "--wait") {
			t.Fatalf("-h: %v\n%s", err, out)
		}
	})
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// TestRun_ExportVerify runs both commands through run, as the binary does, and checks
// the exit codes the main maps their results to.
func TestRun_ExportVerify(t *testing.T) {
	dir := t.TempDir()
	s := openLedgerStack(t, dir, true)
	rs := s.sale(t, "shoe", 4)
	s.catchUp(t)
	s.close(t)
	env := envMap(nil)
	run1 := func(args ...string) (string, int) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, env, &stdout, &stderr)
		return stdout.String(), exitCode(err)
	}
	if out, code := run1("export", "--data-dir", dir, "--format", "jsonl"); code != 0 || strings.Count(out, "\n") != 4 {
		t.Fatalf("export: exit %d, output %q", code, out)
	}
	if out, code := run1("verify", "--data-dir", dir); code != 0 || out != "" {
		t.Fatalf("verify: exit %d, output %q", code, out)
	}
	if _, code := run1("verify", "--data-dir", dir, "--bogus"); code != 2 {
		t.Fatalf("verify with a bad flag: exit %d, want 2", code)
	}
	if _, code := run1("export", "--help"); code != 0 {
		t.Fatalf("export --help: exit %d, want 0", code)
	}
	tamper(t, dir, `UPDATE reservations SET status = 'expired' WHERE id = '`+rs[3].ID+`'`)
	if out, code := run1("verify", "--data-dir", dir); code != 1 || !strings.Contains(out, rs[3].ID+": status differs") {
		t.Fatalf("verify of a damaged ledger: exit %d, output %q; want 1 and the difference", code, out)
	}
}

// The hand-made sale: SKU shoe with 1 unit and 10 s holds, put at handMadeT0; A reserved
// at 1 s and expired at 12 s; then B.
var (
	handMadeT0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	handMadeA  = "01KAAAAAAAAAAAAAAAAAAAAAA1"
	handMadeB  = "01KAAAAAAAAAAAAAAAAAAAAAA2"
)

// handMadeSale returns its events, with B stamped bAt seconds into the sale.
func handMadeSale(bAt int) []revguard.Event {
	at := func(s int) time.Time { return handMadeT0.Add(time.Duration(s) * time.Second) }
	return []revguard.Event{
		{Type: revguard.EventSKUPut, Time: at(0), SKU: "shoe", Stock: 1, PerCustomerLimit: 1, HoldSeconds: 10},
		{Type: revguard.EventReserved, Time: at(1), SKU: "shoe", ReservationID: handMadeA, CustomerID: "alice", Quantity: 1, ExpiresAt: at(11)},
		{Type: revguard.EventExpired, Time: at(12), SKU: "shoe", ReservationID: handMadeA, CustomerID: "alice", Quantity: 1},
		{Type: revguard.EventReserved, Time: at(bAt), SKU: "shoe", ReservationID: handMadeB, CustomerID: "bob", Quantity: 1, ExpiresAt: at(bAt + 10)},
	}
}

// writeDataDir writes events to a data dir as serve lays it out: to the journal (which
// numbers them), then through the SQLite ledger's ApplyEvents.
func writeDataDir(tb testing.TB, dir string, events []revguard.Event) {
	tb.Helper()
	ctx := context.Background()
	j := journal.New(filepath.Join(dir, journalDirName))
	j.Logger = slog.New(slog.DiscardHandler)
	if err := j.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	var last uint64
	for i := range events {
		seq, err := j.Append(&events[i])
		if err != nil {
			tb.Fatal(err)
		}
		last = seq
	}
	if err := j.Wait(ctx, last); err != nil {
		tb.Fatal(err)
	}
	if err := j.Close(); err != nil {
		tb.Fatal(err)
	}
	db := sqlite.NewDB(filepath.Join(dir, dbFileName))
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := sqlite.NewLedger(db).ApplyEvents(ctx, events); err != nil {
		tb.Fatal(err)
	}
}
