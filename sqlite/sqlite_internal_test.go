package sqlite

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestMigrate_Upgrade makes a database with the first schema only, as the first release
// did, fills it, then opens it with this binary: the newer migrations are applied and
// the data is intact and usable.
func TestMigrate_Upgrade(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "revguard.db")

	old := NewDB(path)
	dsn, err := old.dsn(false)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetMaxOpenConns(1)
	p, err := newMigrator(conn, old.Logger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 1); err != nil {
		t.Fatalf("migrate to version 1: %v", err)
	}
	// Rows written by a version-1 binary (which had no cursor key yet either).
	if _, err := conn.ExecContext(ctx, `INSERT INTO reservations
		(id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, order_ref, seq)
		VALUES ('01OLD', 'shoe', 'alice', 2, 'confirmed', 1000, 2000, 1500, 'o-1', 7)`); err != nil {
		t.Fatal(err)
	}
	// Its SKU, last put at 3,000 ns, after the reservation (created at 1,000).
	if _, err := conn.ExecContext(ctx, `INSERT INTO skus VALUES ('shoe', 5, 2, 600, NULL, 3000, 6)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `UPDATE ledger_meta SET last_applied = 7`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO sessions VALUES (zeroblob(32), 'bob', 0, 10)`); err != nil {
		t.Fatal(err)
	}
	if n := indexCount(t, conn); n != 0 {
		t.Fatalf("version 1 has %d of version 2's indexes", n)
	}
	conn.Close()

	db := NewDB(path)
	if err := db.Open(ctx); err != nil {
		t.Fatalf("open a version-1 database: %v", err)
	}
	defer db.Close()
	if v, err := db.version(ctx); err != nil || v != SchemaVersion {
		t.Fatalf("version after upgrade = %d, %v; want %d", v, err, SchemaVersion)
	}
	if n := indexCount(t, db.rdb); n != 1 {
		t.Fatalf("after upgrade: %d of version 2's indexes, want 1", n)
	}
	l := NewLedger(db)
	if n, err := l.LastApplied(ctx); err != nil || n != 7 {
		t.Fatalf("LastApplied after upgrade = %d, %v; want 7", n, err)
	}
	page, err := l.FindOrders(ctx, revguard.OrderFilter{Status: revguard.StatusConfirmed})
	if err != nil {
		t.Fatal(err)
	}
	want := revguard.Reservation{ID: "01OLD", SKU: "shoe", CustomerID: "alice", Quantity: 2,
		Status: revguard.StatusConfirmed, CreatedAt: time.Unix(0, 1000).UTC(), ExpiresAt: time.Unix(0, 2000).UTC(),
		ConfirmedAt: time.Unix(0, 1500).UTC(), OrderRef: "o-1"}
	if len(page.Items) != 1 || page.Items[0] != want {
		t.Fatalf("after upgrade: %+v, want [%+v]", page.Items, want)
	}
	// The upgraded ledger goes on from where it was.
	ev := revguard.Event{Seq: 8, Type: revguard.EventReserved, Time: time.Unix(5, 0), SKU: "shoe",
		ReservationID: "01NEW", CustomerID: "carol", Quantity: 1, ExpiresAt: time.Unix(600, 0)}
	put := revguard.Event{Seq: 9, Type: revguard.EventSKUPut, Time: time.Unix(6, 0), SKU: "shoe",
		Stock: 8, PerCustomerLimit: 2, HoldSeconds: 600}
	if err := l.ApplyEvents(ctx, []revguard.Event{ev, put}); err != nil {
		t.Fatal(err)
	}
	// The SKU's last settings were copied into its history, dated back to its first
	// reservation; the new put follows.
	s, err := l.Scan(ctx, ScanFilter{StockHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	h := s.StockHistory()
	s.Close()
	if len(h) != 2 || h[0] != (revguard.StockChange{SKU: "shoe", Time: time.Unix(0, 1000).UTC(), Stock: 5}) ||
		h[1] != (revguard.StockChange{SKU: "shoe", Time: time.Unix(6, 0).UTC(), Stock: 8}) {
		t.Fatalf("stock history after upgrade: %+v", h)
	}
	if _, err := NewSessions(db).PurgeExpired(ctx); err != nil {
		t.Fatal(err)
	}
	checkStatusRule(t, db.wdb)
}

// checkStatusRule checks the reservations table of migration 3: a status outside the
// four is refused, and a status change runs without a temporary b-tree (the cost that
// migration removes).
func checkStatusRule(tb testing.TB, conn *sql.DB) {
	tb.Helper()
	ctx := tb.Context()
	_, err := conn.ExecContext(ctx, `INSERT INTO reservations (id, sku, customer_id, quantity, status, created_at, expires_at, seq)
		VALUES ('01BAD', 'shoe', 'eve', 1, 'stolen', 1, 2, 3)`)
	if !isConstraint(err) {
		tb.Fatalf("insert with status 'stolen': %v, want a constraint error", err)
	}
	for _, q := range []string{
		stmtKey{rowsStmt{insertHead, insertTuple, ""}, 1}.text(),
		`UPDATE reservations SET status = ?, seq = ? WHERE id = ?`,
	} {
		args := make([]any, strings.Count(q, "?")) // NULLs: EXPLAIN runs nothing
		if hasOp(tb, conn, "OpenEphemeral", q, args...) {
			tb.Fatalf("%s\nopens a temporary b-tree: the status CHECK is still an IN list", q)
		}
	}
}

// hasOp reports whether the program of query uses the VDBE opcode op.
func hasOp(tb testing.TB, conn *sql.DB, op, query string, args ...any) bool {
	tb.Helper()
	rows, err := conn.QueryContext(tb.Context(), `EXPLAIN `+query, args...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	found := false
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			tb.Fatal(err)
		}
		found = found || fmt.Sprint(vals[1]) == op
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return found
}

// TestMigrate_DownUp undoes the newest migration and applies it again on a database
// with rows: both directions keep the data.
func TestMigrate_DownUp(t *testing.T) {
	ctx := t.Context()
	db := mustOpen(t, time.Now)
	if _, err := db.wdb.ExecContext(ctx, `INSERT INTO reservations (id, sku, customer_id, quantity, status, created_at, expires_at, seq)
		VALUES ('01A', 'shoe', 'alice', 1, 'held', 1, 2, 3)`); err != nil {
		t.Fatal(err)
	}
	p, err := newMigrator(db.wdb, db.Logger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, SchemaVersion-1); err != nil {
		t.Fatalf("down to %d: %v", SchemaVersion-1, err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	var n int
	if err := db.wdb.QueryRowContext(ctx, `SELECT count(*) FROM reservations WHERE customer_id = 'alice'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after down and up: %d rows of alice, %v; want 1", n, err)
	}
	checkStatusRule(t, db.wdb)
}

// indexCount counts the indexes that migration 2 adds.
func indexCount(tb testing.TB, conn *sql.DB) int {
	tb.Helper()
	var n int
	err := conn.QueryRowContext(tb.Context(), `SELECT count(*) FROM sqlite_master
		WHERE type = 'index' AND name = 'sessions_expires_at'`).Scan(&n)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestOpen_ReadOnlyOldSchema refuses to read a database this binary would have to
// migrate, rather than migrate it from a read-only command.
func TestOpen_ReadOnlyOldSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revguard.db")
	old := NewDB(path)
	dsn, _ := old.dsn(false)
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newMigrator(conn, old.Logger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	db := NewDB(path)
	db.ReadOnly = true
	if err := db.Open(t.Context()); err == nil {
		db.Close()
		t.Fatal("read-only Open of a version-1 database: no error")
	}
}

// TestDB_WriterPragmas checks the settings the writer's durability and throughput rest
// on (see dsn): WAL, synchronous=NORMAL with explicit syncs, and the checkpoint size.
func TestDB_WriterPragmas(t *testing.T) {
	db := mustOpen(t, time.Now)
	for _, tt := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "1"}, // NORMAL
		{"wal_autocheckpoint", fmt.Sprint(walCheckpointPages)},
		{"cache_size", fmt.Sprint(-writerCacheKiB)},
		{"foreign_keys", "1"},
	} {
		var got string
		if err := db.wdb.QueryRowContext(t.Context(), `PRAGMA `+tt.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %s, want %s", tt.pragma, got, tt.want)
		}
	}
}
