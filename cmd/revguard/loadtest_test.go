package main

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/revenueguard/revguard/loadtest"
)

// smallSale is a sale of a second or two on the real embedded server: a crowd with
// double clicks, bots, confirms, releases and abandoned holds.
var smallSale = []string{
	"--customers", "300", "--stock", "60", "--arrival", "burst", "--hold-seconds", "2",
	"--confirm", "0.5", "--confirm-delay", "100ms", "--release", "0.2", "--release-delay", "50ms",
	"--bots", "0.2", "--connections", "16", "--duration", "10s", "--ledger-wait", "10s", "--seed", "3",
}

// runLoadtest runs `revguard loadtest args...` and returns its stdout and stderr.
func runLoadtest(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	lc := &LoadtestCommand{Getenv: func(string) string { return "" }, Stdout: &stdout, Stderr: &stderr}
	err := lc.Run(t.Context(), args)
	return stdout.String(), stderr.String(), err
}

func TestLoadtestEmbedded(t *testing.T) {
	parent := t.TempDir()
	stdout, stderr, err := runLoadtest(t, append(smallSale, "--json", "--data-dir", parent)...)
	if err != nil {
		t.Fatalf("loadtest against the embedded server failed: %v\n%s\n%s", err, stdout, stderr)
	}
	var rep loadtest.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, stdout)
	}
	if rep.Mode != "embedded" || len(rep.Checks) != 7 || rep.Err() != nil {
		t.Errorf("mode %q, checks %+v", rep.Mode, rep.Checks)
	}
	sa := rep.Sale
	if sa.Reserved < 60 || sa.SoldOut == 0 || sa.Confirmed == 0 || sa.Bots != 60 || sa.BotHolds != 0 {
		t.Errorf("want a sold-out sale with confirms and refused bots: %+v", sa)
	}
	for _, c := range rep.Checks {
		if c.Skipped {
			t.Errorf("check %s skipped: %s", c.Name, c.Detail)
		}
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("the embedded server's folder was left behind: %v", left)
	}
	t.Logf("%s", stderr)
}
