package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/sqlite"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// ExportCommand is `revguard export`: it writes the ledger, every reservation in its
// latest state, as CSV or JSON lines, for accounting. It reads one consistent snapshot
// of the SQLite ledger without writing to it, so it works on a stopped server's data and
// beside a running server alike.
type ExportCommand struct {
	Getenv         func(string) string
	Stdout, Stderr io.Writer

	// IsTerminal reports whether w is a terminal, which decides whether a progress bar
	// is drawn on Stderr. Defaults to checking for an *os.File on a terminal.
	IsTerminal func(w io.Writer) bool
}

// exportOptions are the settings of one export.
type exportOptions struct {
	dataDir string
	format  string
	sku     string
	since   time.Time
	out     string
}

// Usage returns the help of `revguard export`.
func (c *ExportCommand) Usage() string {
	return `Usage: revguard export [flags]

Writes every reservation of the ledger in its latest state, oldest first, as CSV (with a
header line) or JSON lines (one reservation object of the API per line), to stdout or
--out. It reads a consistent snapshot of <data-dir>/revguard.db and never writes to it:
run it on a stopped server's data or beside a running server. A progress bar is drawn on
stderr when stderr is a terminal.

Flags:
  --data-dir dir
      embedded mode's files, as given to revguard serve
      env REVGUARD_DATA_DIR; default: ./revguard-data
  --format csv|jsonl
      output format; default: csv
  --sku id
      only the reservations of this SKU
  --since time
      only the reservations created at or after this RFC 3339 time
  --out file
      write to this file (replaced) instead of stdout
  --redis-url, --postgres-url url
      distributed mode (env REVGUARD_REDIS_URL, REVGUARD_POSTGRES_URL): not available in
      this build
`
}

// parse reads args and the environment into options, or fails with a usage error.
func (c *ExportCommand) parse(args []string) (exportOptions, error) {
	o := exportOptions{dataDir: "./revguard-data", format: "csv"}
	fs := flag.NewFlagSet("revguard export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var since string
	stores := bindStoreFlags(fs, &o.dataDir, c.Getenv)
	fs.StringVar(&o.format, "format", o.format, "csv or jsonl")
	fs.StringVar(&o.sku, "sku", "", "only this SKU")
	fs.StringVar(&since, "since", "", "only reservations created at or after this RFC 3339 time")
	fs.StringVar(&o.out, "out", "", "output file")
	if err := parseFlags(fs, "export", args); err != nil {
		return o, err
	}
	if err := stores.check("export"); err != nil {
		return o, err
	}
	switch o.format {
	case "csv", "jsonl":
	default:
		return o, usageErrorf("export: --format must be csv or jsonl, not %q", o.format)
	}
	if o.sku != "" && !revguard.ValidSKUID(o.sku) {
		return o, usageErrorf("export: --sku %q is not a SKU id (1 to %d characters from A-Z a-z 0-9 . _ : -)", o.sku, revguard.MaxSKUIDLen)
	}
	if since != "" {
		t, err := time.Parse(time.RFC3339Nano, since)
		if err != nil {
			return o, usageErrorf("export: --since %q is not an RFC 3339 time such as 2026-11-27T10:00:00Z", since)
		}
		o.since = t
	}
	return o, nil
}

// Run exports the ledger.
func (c *ExportCommand) Run(ctx context.Context, args []string) (err error) {
	o, err := c.parse(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.Stdout, c.Usage())
		}
		return err
	}
	db, err := openLedgerReadOnly(ctx, o.dataDir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer db.Close()
	scan, err := sqlite.NewLedger(db).Scan(ctx, sqlite.ScanFilter{SKU: o.sku, Since: o.since})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer scan.Close()

	out := c.Stdout
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("export: %w", cerr)
			}
		}()
		out = f
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	write := newExportWriter(bw, o.format)

	var bar *progressbar.ProgressBar
	if c.isTerminal(c.Stderr) {
		bar = progressbar.NewOptions(scan.Total(),
			progressbar.OptionSetWriter(c.Stderr),
			progressbar.OptionSetDescription("exporting"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("reservations"),
			progressbar.OptionShowIts(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(c.Stderr) }),
		)
	}
	n := 0
	for scan.Next() {
		if err := write(scan.Reservation()); err != nil {
			return fmt.Errorf("export: write: %w", err)
		}
		n++
		if bar != nil && n%256 == 0 {
			bar.Set(n)
		}
		if n%4096 == 0 && ctx.Err() != nil {
			return fmt.Errorf("export: %w", ctx.Err())
		}
	}
	if err := scan.Err(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := write(revguard.Reservation{}); err != nil { // flush the format's buffer
		return fmt.Errorf("export: write: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: write: %w", err)
	}
	if bar != nil {
		bar.Set(n)
		bar.Finish()
	}
	fmt.Fprintf(c.Stderr, "exported %d reservations (ledger at journal seq %d)\n", n, scan.LastApplied())
	return nil
}

func (c *ExportCommand) isTerminal(w io.Writer) bool {
	if c.IsTerminal != nil {
		return c.IsTerminal(w)
	}
	return isTerminal(w)
}

// isTerminal reports whether w is a file on a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// exportColumns is the CSV header: the fields of the API's reservation object.
var exportColumns = []string{"id", "sku", "customer_id", "quantity", "status", "created_at",
	"expires_at", "confirmed_at", "released_at", "order_ref"}

// newExportWriter returns a func that writes one reservation in format, and flushes
// its buffer when called with the zero Reservation.
func newExportWriter(w io.Writer, format string) func(revguard.Reservation) error {
	if format == "jsonl" {
		bw := bufio.NewWriter(w)
		var line []byte
		return func(r revguard.Reservation) error {
			if r.ID == "" {
				return bw.Flush()
			}
			line = append(httpapi.AppendReservation(line[:0], &r), '\n')
			_, err := bw.Write(line)
			return err
		}
	}
	cw := csv.NewWriter(w)
	header := false
	row := make([]string, len(exportColumns))
	return func(r revguard.Reservation) error {
		if !header {
			header = true
			if err := cw.Write(exportColumns); err != nil {
				return err
			}
		}
		if r.ID == "" {
			cw.Flush()
			return cw.Error()
		}
		row = append(row[:0], r.ID, r.SKU, r.CustomerID, strconv.FormatInt(r.Quantity, 10), string(r.Status),
			csvTime(r.CreatedAt), csvTime(r.ExpiresAt), csvTime(r.ConfirmedAt), csvTime(r.ReleasedAt), r.OrderRef)
		return cw.Write(row)
	}
}

// csvTime formats t as RFC 3339 in UTC, or "" for the zero time (null).
func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// storeFlags are the store settings that export and verify share with serve.
type storeFlags struct{ redisURL, postgresURL string }

// bindStoreFlags registers --data-dir, --redis-url and --postgres-url on fs, with their
// REVGUARD_* variables as defaults (the flag wins), as serve does.
func bindStoreFlags(fs *flag.FlagSet, dataDir *string, getenv func(string) string) *storeFlags {
	s := &storeFlags{}
	env := func(k, def string) string {
		if getenv != nil {
			if v := getenv(k); v != "" {
				return v
			}
		}
		return def
	}
	fs.StringVar(dataDir, "data-dir", env("REVGUARD_DATA_DIR", *dataDir), "data directory")
	fs.StringVar(&s.redisURL, "redis-url", env("REVGUARD_REDIS_URL", ""), "distributed mode (not available)")
	fs.StringVar(&s.postgresURL, "postgres-url", env("REVGUARD_POSTGRES_URL", ""), "distributed mode (not available)")
	return s
}

// check refuses distributed mode, which this build lacks, rather than silently reading
// the embedded files instead.
func (s *storeFlags) check(cmd string) error {
	if s.redisURL != "" || s.postgresURL != "" {
		return usageErrorf("%s: distributed mode (--redis-url / --postgres-url, REVGUARD_REDIS_URL / REVGUARD_POSTGRES_URL) "+
			"is not available in this build; unset them to use the embedded data in --data-dir", cmd)
	}
	return nil
}

// parseFlags parses args with fs, turning mistakes into usage errors.
func parseFlags(fs *flag.FlagSet, cmd string, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		msg := strings.NewReplacer("for flag -", "for flag --", "not defined: -", "not defined: --").Replace(err.Error())
		return usageErrorf("%s: %s", cmd, msg)
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q", cmd, fs.Arg(0))
	}
	return nil
}

// openLedgerReadOnly opens <dataDir>/revguard.db without writing to it.
func openLedgerReadOnly(ctx context.Context, dataDir string) (*sqlite.DB, error) {
	path := filepath.Join(dataDir, dbFileName)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no ledger at %s (is --data-dir right?): %w", path, err)
	}
	db := sqlite.NewDB(path)
	db.ReadOnly = true
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(ctx); err != nil {
		return nil, err
	}
	return db, nil
}
