package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		for _, args := range [][]string{{"--wait", "soon"}, {"--wait", "-1s"}, {"--nope"}, {"x"}, {"--redis-url", "redis://127.0.0.1:6379/0"}} {
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
