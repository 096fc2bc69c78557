package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/storetest"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/revguardtest"
)

// testURL returns the PostgreSQL of the tests (REVGUARD_TEST_POSTGRES_URL). It skips the
// test when none is set, or fails it when REVGUARD_TEST_REQUIRE_ALL=1 (CI).
func testURL(tb testing.TB) string {
	tb.Helper()
	return storetest.PostgresURL(tb)
}

// MustCreateSchema returns the name of a new, empty schema of its own for the test
// (Open creates it), and drops it, with everything in it, when the test ends. Tests of
// several engineers share one database: each touches only its own schema.
func MustCreateSchema(tb testing.TB) string {
	tb.Helper()
	return storetest.Schema(tb, testURL(tb))
}

// NewDB returns a DB on schema of the test database, with quiet logs, not yet open.
func NewDB(tb testing.TB, schema string) *postgres.DB {
	db := postgres.NewDB(testURL(tb))
	db.Schema = schema
	db.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return db
}

// MustOpenDB opens a DB on a new schema of its own, closed and dropped at the end of
// the test.
func MustOpenDB(tb testing.TB) *postgres.DB {
	tb.Helper()
	return MustOpenDBIn(tb, MustCreateSchema(tb))
}

// MustOpenDBIn opens a DB on schema, closed at the end of the test.
func MustOpenDBIn(tb testing.TB, schema string) *postgres.DB {
	tb.Helper()
	db := NewDB(tb, schema)
	if err := db.Open(tb.Context()); err != nil {
		tb.Fatalf("open schema %s: %v", schema, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return db
}

// MustConnect returns a connection of its own to schema, for checks that read the
// tables directly, closed at the end of the test.
func MustConnect(tb testing.TB, schema string) *pgx.Conn {
	tb.Helper()
	cfg, err := pgx.ParseConfig(testURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	conn, err := pgx.ConnectConfig(tb.Context(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestDB_Open(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		if err := db.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Reopen", func(t *testing.T) {
		schema := MustCreateSchema(t)
		l := postgres.NewLedger(MustOpenDBIn(t, schema))
		var log revguardtest.EventLog
		for range 3 {
			log.Reserve("shoe", "alice", 1)
		}
		revguardtest.MustApply(t, l, log.Events)
		page, err := l.FindOrders(t.Context(), revguard.OrderFilter{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		// Another node, or this one after a restart: the migrations are there, and so is
		// the cursor key.
		l2 := postgres.NewLedger(MustOpenDBIn(t, schema))
		next, err := l2.FindOrders(t.Context(), revguard.OrderFilter{Limit: 1, Cursor: page.NextCursor})
		if err != nil || len(next.Items) != 1 || next.Items[0].ID != revguardtest.ReservationID(2) {
			t.Fatalf("page 2 on the other DB: %+v, %v", next, err)
		}
		if n, err := l2.LastApplied(t.Context()); err != nil || n != 3 {
			t.Fatalf("LastApplied = %d, %v; want 3", n, err)
		}
	})
	t.Run("CloseTwice", func(t *testing.T) {
		db := NewDB(t, MustCreateSchema(t))
		if err := db.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := db.Ping(t.Context()); err == nil {
			t.Fatal("Ping after Close: no error")
		}
	})
	for _, schema := range []string{"1abc", "a-b", "a b", `a"b`, "public; DROP TABLE x", strings.Repeat("a", 64), "é"} {
		t.Run(fmt.Sprintf("ErrSchemaName=%q", schema), func(t *testing.T) {
			db := postgres.NewDB("postgres://postgres@127.0.0.1:1/test") // refused before any connection
			db.Schema = schema
			if err := db.Open(t.Context()); err == nil || revguard.ErrorCode(err) == revguard.CodeUnavailable {
				db.Close()
				t.Fatalf("Open with schema %q: error %v, want one about the name", db.Schema, err)
			}
		})
	}
	t.Run("ErrNoURL", func(t *testing.T) {
		if err := postgres.NewDB("").Open(t.Context()); err == nil {
			t.Fatal("Open with no URL: no error")
		}
	})
	t.Run("ErrURL", func(t *testing.T) {
		if err := postgres.NewDB("postgres://%zz").Open(t.Context()); err == nil {
			t.Fatal("Open with a malformed URL: no error")
		}
	})
}

// TestDB_OpenConcurrent opens one fresh schema from ten DBs at once, as ten nodes
// starting together do: all succeed, the schema is migrated once, and they share one
// cursor key.
func TestDB_OpenConcurrent(t *testing.T) {
	schema := MustCreateSchema(t)
	const nodes = 10
	dbs := make([]*postgres.DB, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range dbs {
		dbs[i] = NewDB(t, schema)
		wg.Go(func() {
			<-start
			errs[i] = dbs[i].Open(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: Open: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	conn := MustConnect(t, schema)
	var applied, versions int
	if err := conn.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&applied, &versions); err != nil {
		t.Fatal(err)
	}
	if applied != postgres.SchemaVersion || versions != postgres.SchemaVersion {
		t.Fatalf("goose_db_version has %d rows of %d versions, want one row for each of %d migrations", applied, versions, postgres.SchemaVersion)
	}
	var keys int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM ledger_meta`).Scan(&keys); err != nil || keys != 1 {
		t.Fatalf("ledger_meta has %d rows (%v), want 1", keys, err)
	}
	// A cursor issued by one node is good on every other.
	var log revguardtest.EventLog
	log.Reserve("shoe", "a", 1)
	log.Reserve("shoe", "b", 1)
	revguardtest.MustApply(t, postgres.NewLedger(dbs[0]), log.Events)
	p, err := postgres.NewLedger(dbs[0]).FindOrders(t.Context(), revguard.OrderFilter{Limit: 1})
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: %+v, %v", p, err)
	}
	for i, db := range dbs[1:] {
		if _, err := postgres.NewLedger(db).FindOrders(t.Context(), revguard.OrderFilter{Limit: 1, Cursor: p.NextCursor}); err != nil {
			t.Errorf("node %d refuses node 0's cursor: %v", i+1, err)
		}
	}
}

// TestDB_Unavailable checks that a PostgreSQL that cannot be reached, or stops
// answering, fails every call with CodeUnavailable within the DB's Timeout.
func TestDB_Unavailable(t *testing.T) {
	const timeout = 500 * time.Millisecond
	// within fails the test unless err is CodeUnavailable and came in time.
	within := func(t *testing.T, what string, start time.Time, err error) {
		t.Helper()
		if code := revguard.ErrorCode(err); code != revguard.CodeUnavailable {
			t.Fatalf("%s: error %v (code %q), want unavailable", what, err, code)
		}
		if d := time.Since(start); d > 10*timeout {
			t.Fatalf("%s took %s with a timeout of %s", what, d, timeout)
		}
	}
	t.Run("ClosedPort", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		db := postgres.NewDB("postgres://postgres@" + addr + "/test?sslmode=disable")
		db.Timeout = timeout
		start := time.Now()
		err = db.Open(t.Context())
		within(t, "Open", start, err)
	})
	t.Run("Silent", func(t *testing.T) {
		// A server that accepts connections and never says a word.
		p := newProxy(t, "")
		db := postgres.NewDB("postgres://postgres@" + p.addr() + "/test?sslmode=disable")
		db.Timeout = timeout
		start := time.Now()
		err := db.Open(t.Context())
		within(t, "Open", start, err)
	})
	t.Run("StopsAnswering", func(t *testing.T) {
		schema := MustCreateSchema(t)
		target, err := pgx.ParseConfig(testURL(t))
		if err != nil {
			t.Fatal(err)
		}
		p := newProxy(t, net.JoinHostPort(target.Host, fmt.Sprint(target.Port)))
		db := NewDB(t, schema)
		db.URL = fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", target.User, p.addr(), target.Database)
		db.Timeout = timeout
		if err := db.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		l := postgres.NewLedger(db)
		var log revguardtest.EventLog
		r := log.Reserve("shoe", "alice", 1)
		revguardtest.MustApply(t, l, log.Events)
		log.Change(revguard.EventConfirmed, r, "", false)

		p.freeze()
		calls := []struct {
			name string
			call func(context.Context) error
		}{
			{"Ping", db.Ping},
			{"ApplyEvents", func(ctx context.Context) error { return l.ApplyEvents(ctx, log.Events[1:]) }},
			{"LastApplied", func(ctx context.Context) error { _, err := l.LastApplied(ctx); return err }},
			{"FindOrders", func(ctx context.Context) error { _, err := l.FindOrders(ctx, revguard.OrderFilter{}); return err }},
			{"FindReservation", func(ctx context.Context) error { _, err := l.FindReservation(ctx, r.ReservationID); return err }},
			{"Scan", func(ctx context.Context) error { _, err := l.Scan(ctx, postgres.ScanFilter{}); return err }},
		}
		for _, c := range calls {
			start := time.Now()
			within(t, c.name, start, c.call(t.Context()))
		}
		// Back: new connections work again, and the change that failed can be applied.
		p.thaw()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := l.ApplyEvents(t.Context(), log.Events[1:])
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ApplyEvents after the database came back: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		revguardtest.CheckReservations(t, revguardtest.AllOrders(t, l, revguard.OrderFilter{}), log.Expect())
	})
}

// proxy forwards loopback TCP connections to target, or, with target "" or while
// frozen, accepts them and never answers. Its goroutines are the test's: Cleanup
// closes the listener and every connection, which ends them all.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, frozen: target == ""}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.thaw() // ends the gates' waits
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		frozen := p.frozen
		p.mu.Unlock()
		if frozen {
			continue // held open, never answered, closed by Cleanup or thaw
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, up)
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(up, c); up.Close() })
		p.wg.Go(func() { io.Copy(c, p.gate(up)); c.Close() })
	}
}

// gate returns r, whose reads block while the proxy is frozen: the server's answers
// stop reaching the client, as when the server or the network hangs.
func (p *proxy) gate(r io.Reader) io.Reader {
	return readerFunc(func(b []byte) (int, error) {
		n, err := r.Read(b)
		for {
			p.mu.Lock()
			frozen := p.frozen
			p.mu.Unlock()
			if !frozen {
				return n, err
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// freeze stops every answer, on open connections and new ones.
func (p *proxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

// thaw drops every connection, so that clients reconnect, and forwards again.
func (p *proxy) thaw() {
	p.closeAll()
	p.mu.Lock()
	p.frozen = false
	p.mu.Unlock()
}

func (p *proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestDB_OpenReadOnly checks the read-only Open of export and verify: a schema that
// holds no ledger is an error and is not created; an existing ledger opens and reads.
func TestDB_OpenReadOnly(t *testing.T) {
	ctx := t.Context()
	schema := MustCreateSchema(t) // dropped at the end, should the Open create it anyway
	ro := NewDB(t, schema)
	ro.ReadOnly = true
	if err := ro.Open(ctx); err == nil || !strings.Contains(err.Error(), "no ledger") {
		t.Fatalf("read-only Open of an empty schema: %v", err)
	}
	conn := MustConnect(t, schema)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1`, schema).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the read-only Open created schema %s: %d, %v", schema, n, err)
	}

	MustOpenDBIn(t, schema) // a node's Open: the ledger
	ro = NewDB(t, schema)
	ro.ReadOnly = true
	if err := ro.Open(ctx); err != nil {
		t.Fatalf("read-only Open of a ledger: %v", err)
	}
	defer ro.Close()
	if _, err := postgres.NewLedger(ro).FindReservation(ctx, "nope"); revguard.ErrorCode(err) != revguard.CodeReservationNotFound {
		t.Fatalf("a read of the read-only ledger: %v", err)
	}

	// A ledger of an older version is not read (nor migrated): its tables may lack
	// what this version reads.
	if _, err := conn.Exec(ctx, `DELETE FROM goose_db_version WHERE version_id = $1`, postgres.SchemaVersion); err != nil {
		t.Fatal(err)
	}
	old := NewDB(t, schema)
	old.ReadOnly = true
	if err := old.Open(ctx); err == nil || !strings.Contains(err.Error(), "start a node of this version") {
		old.Close()
		t.Fatalf("read-only Open of an older ledger: %v", err)
	}
}
