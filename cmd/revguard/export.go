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
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/sqlite"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// ExportCommand is `revguard export`: it writes the ledger, every reservation in its
// latest state, as CSV or JSON lines, for accounting. It reads one consistent snapshot
// of the SQLite ledger (or, in distributed mode, of the PostgreSQL ledger) without
// writing to it, so it works on a stopped server's data and beside a running server
// alike.
type ExportCommand struct {
	Getenv         func(string) string
	Stdout, Stderr io.Writer

	// IsTerminal reports whether w is a terminal, which decides whether a progress bar
	// is drawn on Stderr. Defaults to checking for an *os.File on a terminal.
	IsTerminal func(w io.Writer) bool
}

// exportOptions are the settings of one export.
type exportOptions struct {
	stores  *storeFlags
	dataDir string
	format  string
	sku     string
	since   time.Time
	out     string
	rooms   bool // the waiting rooms' log instead of the reservations
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
      output format; default: csv (for spreadsheets: a text that starts with =, +,
      -, @, a tab or a carriage return, which a spreadsheet would run as a formula,
      gets a leading '; jsonl keeps every value as it is)
  --sku id
      only the reservations of this SKU
  --since time
      only the reservations created at or after this RFC 3339 time
  --out file
      write to this file (replaced) instead of stdout
  --waiting-room
      write the waiting rooms' log instead (of --sku's room, or of every room): each
      setting, join, draw (its seed, then each customer's place), admission, use,
      closing and reopening, in order; then check that every draw is the one its seed
      and the join order give, saying so on stderr (exit 1 if one is not); not with
      --since; in distributed mode it reads the ledger's copy of the rooms' logs,
      then what Redis (--redis-url) has that is not copied yet
  --postgres-url url, --postgres-schema name
      distributed mode: read the PostgreSQL ledger of the fleet started with these
      (env REVGUARD_POSTGRES_URL, REVGUARD_POSTGRES_SCHEMA; default schema revguard)
      instead of --data-dir (not both on the command line); --redis-url
      (REVGUARD_REDIS_URL) is needed with --waiting-room only
`
}

// parse reads args and the environment into options, or fails with a usage error.
func (c *ExportCommand) parse(args []string) (exportOptions, error) {
	o := exportOptions{dataDir: "./revguard-data", format: "csv"}
	fs := flag.NewFlagSet("revguard export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var since string
	o.stores = bindStoreFlags(fs, &o.dataDir, c.Getenv)
	fs.StringVar(&o.format, "format", o.format, "csv or jsonl")
	fs.StringVar(&o.sku, "sku", "", "only this SKU")
	fs.StringVar(&since, "since", "", "only reservations created at or after this RFC 3339 time")
	fs.StringVar(&o.out, "out", "", "output file")
	fs.BoolVar(&o.rooms, "waiting-room", false, "the waiting rooms' log")
	if err := parseFlags(fs, "export", args); err != nil {
		return o, err
	}
	if err := o.stores.check("export", o.rooms); err != nil {
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
	if o.rooms && since != "" {
		return o, usageErrorf("export: --waiting-room writes whole room logs: no --since")
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
	var scan *exportScan
	if !o.rooms {
		scan, err = c.openScan(ctx, o)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer scan.Close()
	}
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
	if o.rooms {
		err := c.exportRooms(ctx, o, bw)
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		return nil
	}
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
	fmt.Fprintf(c.Stderr, "exported %d reservations (%s)\n", n, scan.where)
	return nil
}

// ledgerScan is a scan of the ledger's reservations, SQLite's or PostgreSQL's.
type ledgerScan interface {
	Next() bool
	Reservation() revguard.Reservation
	Err() error
	Close() error
	Total() int
	LastApplied() uint64
}

// exportScan is the scan of one export, with what closes its ledger and the words
// that say which ledger it read.
type exportScan struct {
	ledgerScan
	closeLedger func() error
	where       string
}

// Close ends the scan and closes its ledger.
func (s *exportScan) Close() error { return errors.Join(s.ledgerScan.Close(), s.closeLedger()) }

// openScan opens the ledger of o's mode and starts the scan of its reservations.
func (c *ExportCommand) openScan(ctx context.Context, o exportOptions) (*exportScan, error) {
	if o.stores.distributed() {
		return openPostgresScan(ctx, o)
	}
	db, err := openLedgerReadOnly(ctx, o.dataDir)
	if err != nil {
		return nil, err
	}
	scan, err := sqlite.NewLedger(db).Scan(ctx, sqlite.ScanFilter{SKU: o.sku, Since: o.since})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &exportScan{ledgerScan: scan, closeLedger: db.Close, where: fmt.Sprintf("ledger at journal seq %d", scan.LastApplied())}, nil
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
		row = append(row[:0], r.ID, spreadsheetText(r.SKU), spreadsheetText(r.CustomerID), strconv.FormatInt(r.Quantity, 10), string(r.Status),
			csvTime(r.CreatedAt), csvTime(r.ExpiresAt), csvTime(r.ConfirmedAt), csvTime(r.ReleasedAt), spreadsheetText(r.OrderRef))
		return cw.Write(row)
	}
}

// spreadsheetText is a text field of the CSV export as a spreadsheet reads it: one
// that starts with =, +, -, @, a tab or a carriage return would be a formula there
// (an order_ref is the customer's own text), so it gets a leading ' that shows it as
// text (OWASP's advice on CSV injection). The JSON lines export keeps every value as
// it is.
func spreadsheetText(s string) string {
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// csvTime formats t as RFC 3339 in UTC, or "" for the zero time (null).
func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// storeFlags are the store settings that export and verify share with serve.
type storeFlags struct {
	redisURL, postgresURL, namespace, schema string
	fs                                       *flag.FlagSet // to tell a --data-dir given on the command line
}

// bindStoreFlags registers --data-dir, --redis-url, --postgres-url, --redis-namespace
// and --postgres-schema on fs, with their REVGUARD_* variables as defaults (the flag
// wins), as serve does.
func bindStoreFlags(fs *flag.FlagSet, dataDir *string, getenv func(string) string) *storeFlags {
	s := &storeFlags{fs: fs}
	env := func(k, def string) string {
		if getenv != nil {
			if v := getenv(k); v != "" {
				return v
			}
		}
		return def
	}
	fs.StringVar(dataDir, "data-dir", env("REVGUARD_DATA_DIR", *dataDir), "data directory")
	fs.StringVar(&s.redisURL, "redis-url", env("REVGUARD_REDIS_URL", ""), "distributed mode: Redis")
	fs.StringVar(&s.postgresURL, "postgres-url", env("REVGUARD_POSTGRES_URL", ""), "distributed mode: PostgreSQL")
	fs.StringVar(&s.namespace, "redis-namespace", env("REVGUARD_REDIS_NAMESPACE", redis.DefaultNamespace), "distributed mode: Redis key prefix")
	fs.StringVar(&s.schema, "postgres-schema", env("REVGUARD_POSTGRES_SCHEMA", postgres.DefaultSchema), "distributed mode: PostgreSQL schema")
	return s
}

// distributed reports whether the flags name a fleet's stores rather than --data-dir.
func (s *storeFlags) distributed() bool { return s.redisURL != "" || s.postgresURL != "" }

// check validates the distributed mode's settings as serve does: a PostgreSQL URL
// always, a Redis URL too when needRedis (verify reads both; export only the ledger).
func (s *storeFlags) check(cmd string, needRedis bool) error {
	if !s.distributed() {
		return nil
	}
	dataDirFlag := false
	s.fs.Visit(func(f *flag.Flag) { dataDirFlag = dataDirFlag || f.Name == "data-dir" })
	var err error
	switch {
	case dataDirFlag:
		// An explicit --data-dir against a fleet's URL (a REVGUARD_ variable left set,
		// say): which stores were meant is not for the command to guess.
		err = errors.New("--data-dir names the embedded mode's stores, and --redis-url or --postgres-url (or REVGUARD_REDIS_URL, REVGUARD_POSTGRES_URL) a fleet's: give one")
	case s.postgresURL == "":
		err = errors.New("distributed mode needs --postgres-url (REVGUARD_POSTGRES_URL): the ledger lives in PostgreSQL")
	case needRedis && s.redisURL == "":
		err = errors.New("distributed mode needs --redis-url (REVGUARD_REDIS_URL) too: the reservation engine's state lives in Redis")
	default:
		err = validateNames(s.namespace, s.schema)
	}
	if err == nil && s.redisURL != "" {
		if uerr := validateURL(s.redisURL, "redis", "rediss", "unix"); uerr != nil {
			err = fmt.Errorf("--redis-url (REVGUARD_REDIS_URL): %w", uerr)
		}
	}
	if err == nil {
		if uerr := validateURL(s.postgresURL, "postgres", "postgresql"); uerr != nil {
			err = fmt.Errorf("--postgres-url (REVGUARD_POSTGRES_URL): %w", uerr)
		}
	}
	if err != nil {
		return usageErrorf("%s: %v", cmd, err)
	}
	return nil
}

// flagDashes names the flags in the flag package's errors with two dashes, as the
// help does (the package writes one).
var flagDashes = strings.NewReplacer("for flag -", "for flag --", "not defined: -", "not defined: --",
	"needs an argument: -", "needs an argument: --", "for -", "for --")

// flagError is the text of a flag parsing error, with two-dash flag names.
func flagError(err error) string { return flagDashes.Replace(err.Error()) }

// parseFlags parses args with fs, turning mistakes into usage errors.
func parseFlags(fs *flag.FlagSet, cmd string, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%s: %s", cmd, flagError(err))
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
