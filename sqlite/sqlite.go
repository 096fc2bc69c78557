// Package sqlite keeps Revenue Guard's ledger and customer sessions in one SQLite file,
// through the pure-Go driver modernc.org/sqlite, for the embedded mode.
//
// The schema lives in migration/*.sql, embedded in the binary and applied by goose when
// a DB opens. Times are stored as unix nanoseconds and returned in UTC.
//
// A DB holds two connection pools on the same file: one writer connection (SQLite runs
// one write transaction at a time; a single connection that begins every transaction
// IMMEDIATE never hits the lock-upgrade deadlock of deferred transactions) and a small
// pool of readers, which in WAL mode read a consistent snapshot without blocking or being
// blocked by the writer, in this process or in another one (revguard export and verify
// beside a running server).
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/cursor"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migration/*.sql
var migrationFS embed.FS

// SchemaVersion is the version of the newest migration in migration/.
const SchemaVersion = 6

// walCheckpointPages is the WAL size, in pages, at which the writer copies the WAL
// back into the database file (wal_autocheckpoint; SQLite's default is 1000). The copy
// runs inside the commit that crosses it, with two fsyncs, and writes each page once
// however many times the WAL holds it; the ledger's index pages recur in every batch.
// At 1000 pages a batch of 1,024 events (about 750 pages) checkpointed nearly every
// time. At 16,384 (64 MiB) checkpoints are rarer and write fewer pages per event, at
// the cost of a longer pause when one runs, and a WAL file of that size on disk.
const walCheckpointPages = 16384

// writerCacheKiB is the page cache of the writer connection (cache_size; SQLite's
// default is 2,000 KiB). The ledger's index pages are spread over the whole file (a
// customer's entry goes wherever the customer sorts), and with a small cache a batch
// reads most of them again from the WAL or the file, a pread each.
const writerCacheKiB = 64 << 10

// busyTimeout is how long a statement waits for a lock held by another connection
// (a checkpoint, or a writer in another process) before failing with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// DB is an open SQLite database holding the ledger and the sessions.
type DB struct {
	// Path is the database file. Its directory is created by Open if missing.
	Path string

	// ReadOnly opens the database without writing to it: no migration, no write
	// transaction, the file must already exist with the current schema. For revguard
	// export and verify on a stopped server's data or beside a running one.
	ReadOnly bool

	// Now returns the current time (sessions' expiry). Defaults to time.Now.
	Now func() time.Time

	// Logger receives migration notices. Defaults to slog.Default().
	Logger *slog.Logger

	wdb *sql.DB // one connection; nil when ReadOnly
	rdb *sql.DB // readers, query_only

	// stmtMu guards stmts, the writer's prepared statements, kept until Close so that
	// each is compiled once rather than once per transaction.
	stmtMu sync.Mutex
	stmts  map[stmtKey]*sql.Stmt

	sessions *sessionCommitter // group commit of CreateSession; nil when ReadOnly

	// findSession is the readers' prepared session lookup: a session read from the
	// store is what every first request of a crowd whose sessions are not cached
	// costs, and compiling the query each time was a sixth of it.
	findSession *sql.Stmt

	cursorKey []byte // HMAC key of page cursors, from ledger_meta
}

// NewDB returns a DB for the file at path; call Open before use.
func NewDB(path string) *DB {
	return &DB{Path: path, Now: time.Now, Logger: slog.Default()}
}

// dsn returns the driver's URI for db.Path with the given query parameters.
//
// Every connection gets the same pragmas: busy_timeout first (so that the others cannot
// fail with SQLITE_BUSY), WAL, foreign keys. The writer runs with synchronous=NORMAL: a
// commit writes its pages to the WAL without an fsync, so it survives a crash of the
// process at once but a crash of the machine only after the next sync of the WAL file
// (syncWAL), which checkpoints also do. Every write path keeps its own durability
// promise on top: a session is created or revoked only once syncWAL has returned (what
// synchronous=FULL did at each commit), and the ledger reports a batch durable, for the
// journal to drop its events, only after Ledger.Sync (revguard.LedgerSyncer). That
// lets the ledger writer apply the next batch while the last one reaches the disk,
// instead of waiting for each fsync in turn.
func (db *DB) dsn(readOnly bool) (string, error) {
	abs, err := filepath.Abs(db.Path)
	if err != nil {
		return "", fmt.Errorf("sqlite: path %q: %w", db.Path, err)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Set("mode", "ro")
		q.Set("_query_only", "1")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walCheckpointPages))
		q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", writerCacheKiB))
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String(), nil
}

// Open opens the database, creating the file and applying the migrations unless
// ReadOnly.
func (db *DB) Open(ctx context.Context) (err error) {
	if db.Path == "" {
		return errors.New("sqlite: path required")
	}
	if db.Now == nil {
		db.Now = time.Now
	}
	if db.Logger == nil {
		db.Logger = slog.Default()
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()

	if db.ReadOnly {
		if _, err := os.Stat(db.Path); err != nil {
			return storeErr("open read-only", err)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(db.Path), 0o700); err != nil {
			return storeErr("create directory", err)
		}
		dsn, err := db.dsn(false)
		if err != nil {
			return err
		}
		if db.wdb, err = sql.Open("sqlite", dsn); err != nil {
			return fmt.Errorf("sqlite: open %s: %w", db.Path, err)
		}
		db.wdb.SetMaxOpenConns(1)
		db.wdb.SetMaxIdleConns(1)
		db.wdb.SetConnMaxLifetime(0)
		db.wdb.SetConnMaxIdleTime(0)
		if err := db.migrate(ctx); err != nil {
			return err
		}
		if err := db.ensureCursorKey(ctx); err != nil {
			return err
		}
		if err := db.prepare(ctx, append(ledgerStmts(), sessionStmts()...)); err != nil {
			return err
		}
		if err := db.syncWAL(); err != nil { // the migrations and the cursor key
			return err
		}
		db.sessions = &sessionCommitter{db: db}
	}

	dsn, err := db.dsn(true)
	if err != nil {
		return err
	}
	if db.rdb, err = sql.Open("sqlite", dsn); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", db.Path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	db.rdb.SetMaxOpenConns(n)
	db.rdb.SetMaxIdleConns(n)
	if db.findSession, err = db.rdb.PrepareContext(ctx, findSessionSQL); err != nil {
		return storeErr("prepare", err)
	}

	if db.ReadOnly {
		v, err := db.version(ctx)
		if err != nil {
			return err
		}
		if v < SchemaVersion {
			return fmt.Errorf("sqlite: %s has schema version %d, this binary needs %d: open it once read-write (revguard serve) to migrate", db.Path, v, SchemaVersion)
		}
	}
	if err := db.rdb.QueryRowContext(ctx, `SELECT cursor_key FROM ledger_meta WHERE id = 1`).Scan(&db.cursorKey); err != nil {
		return storeErr("read cursor key", err)
	}
	if len(db.cursorKey) != cursor.KeySize {
		return fmt.Errorf("sqlite: cursor key of %s is %d bytes, want %d", db.Path, len(db.cursorKey), cursor.KeySize)
	}
	return nil
}

// migrate applies the embedded migrations that the file lacks.
func (db *DB) migrate(ctx context.Context) error {
	p, err := newMigrator(db.wdb, db.Logger)
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: migrate %s: %w", db.Path, err)
	}
	for _, r := range results {
		db.Logger.Info("sqlite: applied migration", "file", r.Source.Path, "version", r.Source.Version, "duration", r.Duration)
	}
	return nil
}

// newMigrator returns the goose provider of the embedded migrations on conn.
func newMigrator(conn *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	sub, err := fs.Sub(migrationFS, "migration")
	if err != nil {
		return nil, storeErr("migrations", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, conn, sub,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(logger),
	)
	if err != nil {
		return nil, storeErr("migrations", err)
	}
	return p, nil
}

// version returns the schema version recorded in the file, 0 for none.
func (db *DB) version(ctx context.Context) (int64, error) {
	var v sql.NullInt64
	err := db.rdb.QueryRowContext(ctx, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s holds no revguard ledger: %w", db.Path, err)
	}
	return v.Int64, nil
}

// ensureCursorKey gives the database its random cursor key on first use. The key lives
// in the file so that cursors survive restarts and work for every reader of the file.
func (db *DB) ensureCursorKey(ctx context.Context) error {
	key := make([]byte, cursor.KeySize)
	rand.Read(key)
	_, err := db.wdb.ExecContext(ctx, `UPDATE ledger_meta SET cursor_key = ? WHERE id = 1 AND cursor_key IS NULL`, key)
	if err != nil {
		return storeErr("set cursor key", err)
	}
	return nil
}

// prepare prepares the writer's statements of keys, once, when the DB opens: preparing
// one later, inside a transaction, would wait for the writer's only connection, which
// that transaction holds.
func (db *DB) prepare(ctx context.Context, keys []stmtKey) error {
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	if db.stmts == nil {
		db.stmts = make(map[stmtKey]*sql.Stmt)
	}
	for _, k := range keys {
		if db.stmts[k] != nil {
			continue
		}
		s, err := db.wdb.PrepareContext(ctx, k.text())
		if err != nil {
			return storeErr("prepare", err)
		}
		db.stmts[k] = s
	}
	return nil
}

// stmt returns statement k for use in tx: the one prepared when the DB opened, which
// tx.StmtContext reuses without compiling it again, or else one compiled for tx alone.
func (db *DB) stmt(ctx context.Context, tx *sql.Tx, k stmtKey) (*sql.Stmt, error) {
	db.stmtMu.Lock()
	s := db.stmts[k]
	db.stmtMu.Unlock()
	if s != nil {
		return tx.StmtContext(ctx, s), nil
	}
	s, err := tx.PrepareContext(ctx, k.text())
	if err != nil {
		return nil, storeErr("prepare", err)
	}
	return s, nil
}

// syncWAL makes every transaction committed so far durable, by an fsync of the WAL
// file. It may run beside the writer: a commit that ends after it started may or may
// not be covered. A checkpoint has synced the WAL before copying its pages into the
// database file, and synced that file before the WAL is reused; so if there is no WAL,
// everything is in the synced database file.
func (db *DB) syncWAL() error {
	if _, err := db.writer(); err != nil {
		return err
	}
	f, err := os.OpenFile(db.Path+"-wal", os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return storeErr("sync", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return storeErr("sync "+f.Name(), err)
	}
	return nil
}

// Close closes the database. It is safe to call more than once.
func (db *DB) Close() error {
	var errs []error
	if db.sessions != nil {
		db.sessions.close()
	}
	db.stmtMu.Lock()
	for k, s := range db.stmts {
		errs = append(errs, s.Close())
		delete(db.stmts, k)
	}
	db.stmtMu.Unlock()
	if db.findSession != nil {
		errs = append(errs, db.findSession.Close())
		db.findSession = nil
	}
	if db.rdb != nil {
		errs = append(errs, db.rdb.Close())
		db.rdb = nil
	}
	if db.wdb != nil {
		errs = append(errs, db.wdb.Close())
		db.wdb = nil
	}
	if err := errors.Join(errs...); err != nil {
		return storeErr("close", err)
	}
	return nil
}

// Ping checks that the database answers (for /readyz).
func (db *DB) Ping(ctx context.Context) error {
	if db.rdb == nil {
		return errors.New("sqlite: not open")
	}
	var one int
	if err := db.rdb.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return storeErr("ping", err)
	}
	return nil
}

// writer returns the write pool, or an error when the DB is read-only or closed.
func (db *DB) writer() (*sql.DB, error) {
	if db.wdb == nil {
		if db.ReadOnly {
			return nil, errors.New("sqlite: database opened read-only")
		}
		return nil, errors.New("sqlite: not open")
	}
	return db.wdb, nil
}

// reader returns the read pool, or an error when the DB is closed.
func (db *DB) reader() (*sql.DB, error) {
	if db.rdb == nil {
		return nil, errors.New("sqlite: not open")
	}
	return db.rdb, nil
}

// nanos returns t as unix nanoseconds, or nil (SQL NULL) for the zero time.
func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// fromNanos is the inverse of nanos: NULL is the zero time, anything else is UTC.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// errUnavailable is what storeErr adds to the error of a database that cannot work
// for now. Shared: never modified.
var errUnavailable = &revguard.Error{Code: revguard.CodeUnavailable, Detail: "the database cannot work for now; try again"}

// storeErr wraps err, from doing what, with context. The error of a database that
// cannot work for now (a full disk, an I/O error, a lock held too long, no memory, a
// file it cannot open or write) is also a revguard.CodeUnavailable error, so that the
// API answers 503 with Retry-After, not 500: the cause is the machine's, and passes.
func storeErr(what string, err error) error {
	if unavailable(err) {
		return fmt.Errorf("sqlite: %s: %w: %w", what, errUnavailable, err)
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

// unavailable reports whether err is a database's that cannot work for now: SQLite's
// code for it, or the system's for a full disk or a failed write (the WAL's own sync).
func unavailable(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EIO) {
		return true
	}
	var e interface{ Code() int }
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
		sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY:
		return true
	}
	return false
}
