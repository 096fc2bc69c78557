// Package postgres keeps Revenue Guard's ledger in PostgreSQL, for the distributed mode:
// every node applies events from the Redis outbox to the same database, in batches
// that may overlap, repeat or arrive out of order, and any node serves ledger queries.
//
// The schema lives in migration/*.sql, embedded in the binary and applied by goose when
// a DB opens, under an advisory lock so that many nodes starting at once migrate once.
// All tables live in one schema (DB.Schema), so that deployments and test runs can
// share a database. Times are stored as unix nanoseconds and returned in UTC.
//
// Every call is bounded (DB.Timeout), and a database that cannot be reached or does not
// answer in time fails with revguard.CodeUnavailable.
package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/cursor"
)

//go:embed migration/*.sql
var migrationFS embed.FS

// SchemaVersion is the version of the newest migration in migration/.
const SchemaVersion = 3

// Defaults of DB's settings.
const (
	DefaultSchema         = "revguard"
	DefaultTimeout        = 10 * time.Second
	DefaultMigrateTimeout = 5 * time.Minute
)

// DB is a pool of connections to the PostgreSQL database that holds the ledger. It is
// safe for concurrent use once open. Its only goroutine is pgxpool's health check,
// started by Open and ended by Close.
type DB struct {
	// URL is the connection string, a postgres:// URL or key=value pairs as libpq takes
	// them. pgxpool's pool_* parameters (pool_max_conns, ...) are honoured.
	URL string

	// Schema holds every table; every connection sets search_path to it, and Open
	// creates it if missing. Letters, digits and underscores, at most 63 bytes.
	Schema string

	// Timeout bounds each call (connecting included): one that takes longer fails with
	// CodeUnavailable.
	Timeout time.Duration

	// MigrateTimeout bounds Open's wait for the migration lock, which another node may
	// hold while it migrates, and the migrations themselves.
	MigrateTimeout time.Duration

	// Logger receives migration notices. Defaults to slog.Default().
	Logger *slog.Logger

	// ReadOnly opens an existing ledger without writing anything: no schema is
	// created, no migration applied, no cursor key stored (export and verify). Open
	// fails when the schema holds no ledger.
	ReadOnly bool

	pool      *pgxpool.Pool
	cursorKey []byte // HMAC key of page cursors, from ledger_meta
}

// NewDB returns a DB for the database at url; call Open before use.
func NewDB(url string) *DB {
	return &DB{URL: url, Schema: DefaultSchema, Timeout: DefaultTimeout,
		MigrateTimeout: DefaultMigrateTimeout, Logger: slog.Default()}
}

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Open connects, creates the schema and applies the migrations it lacks, and reads the
// cursor key (making one on first use).
func (db *DB) Open(ctx context.Context) (err error) {
	db.Schema = cmp.Or(db.Schema, DefaultSchema)
	db.Timeout = cmp.Or(db.Timeout, DefaultTimeout)
	db.MigrateTimeout = cmp.Or(db.MigrateTimeout, DefaultMigrateTimeout)
	if db.Logger == nil {
		db.Logger = slog.Default()
	}
	if db.URL == "" {
		return errors.New("postgres: connection URL required")
	}
	if !schemaName.MatchString(db.Schema) {
		return fmt.Errorf("postgres: schema name %q: want letters, digits and underscores, at most 63", db.Schema)
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		return fmt.Errorf("postgres: parse connection string: %w", err)
	}
	cc := cfg.ConnConfig
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > db.Timeout {
		cc.ConnectTimeout = db.Timeout
	}
	cc.RuntimeParams["search_path"] = pgx.Identifier{db.Schema}.Sanitize()
	// Plan each statement for its parameters and the tables as they are now. A cached
	// generic plan is made once per connection, after five runs: on a new ledger, while
	// the tables are nearly empty, it joins a batch's changes with reservations by a
	// sequential scan, and keeps doing so as the table grows (until an ANALYZE). The
	// statements are few and each does much, so planning them every time costs little.
	if cc.RuntimeParams["plan_cache_mode"] == "" {
		cc.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "revguard"
	}
	// Each connection gets its staging table for ApplyEvents (apply.go) once, when it
	// connects. On a read-only server (a standby, for export) there is none: only
	// ApplyEvents needs it, and it could not write there anyway.
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if db.ReadOnly {
			return nil // no ApplyEvents, and a role that reads may not make tables
		}
		_, err := c.Exec(ctx, createStage)
		if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "25006" {
			return nil
		}
		return err
	}
	if db.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	if db.ReadOnly {
		return db.readExisting(ctx)
	}
	if err := db.migrate(ctx, cc); err != nil {
		return err
	}
	return db.readCursorKey(ctx)
}

// readExisting reads the cursor key of a ledger that must exist already (ReadOnly).
func (db *DB) readExisting(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, db.Timeout)
	defer cancel()
	err := db.pool.QueryRow(ctx, `SELECT cursor_key FROM ledger_meta WHERE id = 1`).Scan(&db.cursorKey)
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == "42P01" { // undefined_table
		return fmt.Errorf("postgres: no ledger in schema %s (is the schema right?)", db.Schema)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil // a ledger no node has opened to the end: nothing in it
	}
	if err != nil {
		return db.formatError(ctx, "read cursor key", err)
	}
	var version int64
	if err := db.pool.QueryRow(ctx, `SELECT COALESCE(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&version); err != nil {
		return db.formatError(ctx, "read the schema's version", err)
	}
	if version < SchemaVersion {
		return fmt.Errorf("postgres: the ledger in schema %s is at version %d, this revguard reads version %d: start a node of this version first (it migrates)",
			db.Schema, version, SchemaVersion)
	}
	return nil
}

// lockKey returns the advisory lock that serialises the migrations of one schema: a
// hash of its name, so that the schemas of one database migrate independently.
func lockKey(schema string) int64 { return advisoryKey("migrate", schema) }

// advisoryKey returns the advisory lock for purpose in schema.
func advisoryKey(purpose, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("revguard " + purpose + " "))
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

// migrate creates the schema and applies the embedded migrations it lacks, holding the
// schema's advisory lock on a connection of its own: the first node to arrive migrates
// while the others wait, then find nothing left to do. The lock is a session lock:
// should this process die, its connection closes and PostgreSQL releases it.
func (db *DB) migrate(ctx context.Context, cc *pgx.ConnConfig) error {
	ctx, cancel := context.WithTimeout(ctx, db.MigrateTimeout)
	defer cancel()
	lockConn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return db.formatError(ctx, "connect", err)
	}
	defer lockConn.Close(context.WithoutCancel(ctx))
	if _, err := lockConn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockKey(db.Schema)); err != nil {
		return db.formatError(ctx, "take the migration lock", err)
	}
	// A schema that exists is left as it is: a deployment may create it beforehand for
	// a role that may not create schemas (CREATE SCHEMA checks that right first, even
	// with IF NOT EXISTS).
	var exists bool
	if err := lockConn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, db.Schema).Scan(&exists); err != nil {
		return db.formatError(ctx, "look up schema", err)
	}
	if !exists {
		if _, err := lockConn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{db.Schema}.Sanitize()); err != nil {
			return db.formatError(ctx, "create schema", err)
		}
		db.Logger.Info("postgres: created schema", "schema", db.Schema)
	}

	sqlDB := stdlib.OpenDBFromPool(db.pool)
	defer sqlDB.Close() // the pool stays open
	sub, err := fs.Sub(migrationFS, "migration")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(db.Logger),
	)
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return db.formatError(ctx, "migrate schema "+db.Schema, err)
	}
	for _, r := range results {
		db.Logger.Info("postgres: applied migration", "schema", db.Schema, "file", r.Source.Path,
			"version", r.Source.Version, "duration", r.Duration)
	}
	if _, err := lockConn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, lockKey(db.Schema)); err != nil {
		return db.formatError(ctx, "release the migration lock", err)
	}
	return nil
}

// readCursorKey reads the database's cursor key, storing a new random one first if
// there is none: of several nodes opening at once, the first insert wins and everyone
// reads it.
func (db *DB) readCursorKey(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, db.Timeout)
	defer cancel()
	key := make([]byte, cursor.KeySize)
	rand.Read(key)
	if _, err := db.pool.Exec(ctx, `INSERT INTO ledger_meta (id, cursor_key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, key); err != nil {
		return db.formatError(ctx, "set cursor key", err)
	}
	if err := db.pool.QueryRow(ctx, `SELECT cursor_key FROM ledger_meta WHERE id = 1`).Scan(&db.cursorKey); err != nil {
		return db.formatError(ctx, "read cursor key", err)
	}
	return nil
}

// Close closes every connection, waiting for those in use (an open Scan) to be
// released. It is safe to call more than once.
func (db *DB) Close() error {
	if db.pool != nil {
		db.pool.Close()
		db.pool = nil
	}
	return nil
}

// Ping checks that the database answers within Timeout (for /readyz). It fails with
// CodeUnavailable when it does not.
func (db *DB) Ping(ctx context.Context) error {
	pool, err := db.acquirePool()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, db.Timeout)
	defer cancel()
	var one int
	if err := pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return db.formatError(ctx, "ping", err)
	}
	return nil
}

// acquirePool returns the pool, or an error when the DB is not open.
func (db *DB) acquirePool() (*pgxpool.Pool, error) {
	if db.pool == nil {
		return nil, errors.New("postgres: not open")
	}
	return db.pool, nil
}

// bound returns ctx limited to the DB's Timeout.
func (db *DB) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.Timeout)
}

// formatError wraps err, from doing what with ctx, with context, and makes it a
// CodeUnavailable error when the database could not be reached or did not answer in
// time; a caller's own cancellation stays a plain error.
func (db *DB) formatError(ctx context.Context, what string, err error) error {
	if errors.Is(err, context.Canceled) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	if unreachable(err) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: %w: %w", what,
			revguard.Errorf(revguard.CodeUnavailable, "the ledger database is unavailable"), err)
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// unreachable reports whether err means that the server could not be reached, went
// away, did not answer in time, or refuses connections for now.
func unreachable(err error) bool {
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // shutting down, starting up
			return true
		case pe.Code == "53300": // too many connections
			return true
		}
		return false
	}
	if pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// nanos returns t as unix nanoseconds, or noTime for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return noTime
	}
	return t.UnixNano()
}

// noTime stands for "not set" in the int8 arrays that ApplyEvents sends (NULL in the
// table): the earliest instant unix nanoseconds can hold, in 1677, which no event has.
const noTime = -1 << 63

// fromNanos is the inverse of nanos for a nullable column: NULL is the zero time, and
// anything else is UTC.
func fromNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}
