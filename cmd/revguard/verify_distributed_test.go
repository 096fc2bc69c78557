package main

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
	"github.com/revenueguard/revguard/redis"
)

// runFleetVerify runs `revguard verify` on the fleet's stores with args.
func runFleetVerify(t *testing.T, f *fleetStores, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &VerifyCommand{Getenv: envMap(nil), Stdout: &stdout, Stderr: &stderr, Poll: 5 * time.Millisecond}
	err := c.Run(t.Context(), append(f.args(), args...))
	return stdout.String(), stderr.String(), err
}

// fleetSale runs a node on f, reserves n units of sku for n customers, confirms the
// first and releases the second, and returns the running node.
func fleetSale(t *testing.T, f *fleetStores, sku string, n int) *runningServer {
	t.Helper()
	ctx := t.Context()
	srv := MustRunServer(t, t.TempDir(), nil, f.args()...)
	admin := newAdmin(t, srv.URL, 4)
	need(admin.PutSKU(ctx, sku, client.SKUSettings{Stock: 100}))(t)
	for i := range n {
		buyer := admin.WithToken(need(admin.CreateSession(ctx, client.SessionParams{CustomerID: fmt.Sprintf("v-%d", i)}))(t).Token)
		r := need(buyer.Reserve(ctx, sku, client.ReserveParams{}))(t)
		switch i {
		case 0:
			need(buyer.Confirm(ctx, r.ID, client.ConfirmParams{OrderRef: "o-1"}))(t)
		case 1:
			need(buyer.Release(ctx, r.ID))(t)
		}
	}
	return srv
}

func TestVerify_Distributed(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		f := mustFleetStores(t)
		srv := fleetSale(t, f, "v-ok", 6)
		// Beside the running node, then on the stopped fleet.
		for range 2 {
			out, errOut, err := runFleetVerify(t, f)
			if err != nil || out != "" || !strings.Contains(errOut, "ledger matches the engine: 6 reservations and 1 SKUs") {
				t.Fatalf("verify: %v\n%s%s", err, out, errOut)
			}
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("ErrDifferences", func(t *testing.T) {
		f := mustFleetStores(t)
		srv := fleetSale(t, f, "v-bad", 4)
		out, _, err := runFleetVerify(t, f) // the ledger has caught up
		if err != nil {
			t.Fatalf("verify before the damage: %v\n%s", err, out)
		}
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		ids := ledgerIDs(t, f, "v-bad")
		tamperLedger(t, f,
			`UPDATE reservations SET status = 'released' WHERE id = '`+ids[2]+`'`,
			`DELETE FROM reservations WHERE id = '`+ids[3]+`'`,
			`INSERT INTO reservations SELECT 'ZZEXTRA', sku, customer_id, quantity, status, created_at, expires_at,
			 confirmed_at, released_at, order_ref, seq FROM reservations WHERE id = '`+ids[0]+`'`)
		// A SKU whose counts no longer match its reservations.
		c, err := redis.Dial(t.Context(), f.redisURL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		key := fmt.Sprintf("{%s:%d}:sku:v-bad", f.namespace, crc32.ChecksumIEEE([]byte("v-bad"))%redis.DefaultShards)
		if n, err := c.HIncrBy(t.Context(), key, "held", 1).Result(); err != nil || n < 1 {
			t.Fatalf("tamper %s: %d, %v", key, n, err)
		}

		out, _, err = runFleetVerify(t, f)
		if err == nil || exitCode(err) != exitError || !strings.Contains(err.Error(), "4 differences") {
			t.Fatalf("verify of a damaged ledger: %v\n%s", err, out)
		}
		for _, want := range []string{
			ids[2] + ": status differs: engine held, ledger released",
			ids[3] + ": missing from the ledger",
			"ZZEXTRA: in the ledger but not in the engine",
			"SKU v-bad: counts held 3 and sold 1, its reservations hold 2 and sold 1",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("verify output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("Retention", func(t *testing.T) {
		// A sale confirmed 24.5 h ago, in the ledger only: purged from Redis by a
		// fleet run with --retention 24h, missing from it with the default 25 h.
		f := mustFleetStores(t)
		srv := fleetSale(t, f, "v-old", 2)
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		ids := ledgerIDs(t, f, "v-old") // times in the ledger are Unix nanoseconds
		tamperLedger(t, f, `INSERT INTO reservations SELECT 'ZZOLD', sku, customer_id, quantity, 'confirmed',
			created_at - 90000000000000, expires_at - 90000000000000, `+fmt.Sprint(time.Now().Add(-24*time.Hour-30*time.Minute).UnixNano())+`,
			NULL, order_ref, seq FROM reservations WHERE id = '`+ids[0]+`'`)
		if out, errOut, err := runFleetVerify(t, f, "--retention", "24h"); err != nil || !strings.Contains(errOut, "ledger matches the engine") {
			t.Fatalf("verify --retention 24h: %v\n%s%s", err, out, errOut)
		}
		// The same from the environment, as a fleet configured by it sets it.
		var stdout, stderr bytes.Buffer
		vc := &VerifyCommand{Getenv: envMap(map[string]string{"REVGUARD_RETENTION": "24h"}), Stdout: &stdout, Stderr: &stderr, Poll: 5 * time.Millisecond}
		if err := vc.Run(t.Context(), f.args()); err != nil || !strings.Contains(stderr.String(), "ledger matches the engine") {
			t.Fatalf("verify with REVGUARD_RETENTION=24h: %v\n%s%s", err, &stdout, &stderr)
		}
		out, _, err := runFleetVerify(t, f) // 25 h: it should still be in Redis
		if err == nil || !strings.Contains(out, "ZZOLD: in the ledger but not in the engine") {
			t.Fatalf("verify with the default retention: %v\n%s", err, out)
		}
	})
	t.Run("ErrLedgerBehind", func(t *testing.T) {
		f := mustFleetStores(t)
		srv := fleetSale(t, f, "v-late", 2)
		// The node has applied the sale before it stops (a node's stop applies only
		// what its outbox has read), so that exactly the change below waits.
		if out, errOut, err := runFleetVerify(t, f, "--wait", "20s"); err != nil {
			t.Fatalf("verify of the sale: %v\n%s%s", err, out, errOut)
		}
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		// A change made while no node runs: its event waits in the outbox.
		c, err := redis.Dial(t.Context(), f.redisURL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		inv := redis.NewInventory(c)
		inv.Namespace = f.namespace
		if err := inv.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer inv.Close()
		if _, _, err := inv.Reserve(t.Context(), revguard.ReserveRequest{SKU: "v-late", CustomerID: "late", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		_, _, err = runFleetVerify(t, f, "--wait", "200ms")
		if err == nil || !strings.Contains(err.Error(), "still lacks 1 events") {
			t.Fatalf("verify with an event waiting in the outbox: %v", err)
		}
		// A node starting again applies it.
		MustRunServer(t, t.TempDir(), nil, f.args()...)
		if out, errOut, err := runFleetVerify(t, f, "--wait", "20s"); err != nil {
			t.Fatalf("verify after a node started: %v\n%s%s", err, out, errOut)
		}
	})
	t.Run("ErrNoSuchStores", func(t *testing.T) {
		// A namespace or schema no fleet has opened (mistyped) is an error, and neither
		// command creates it: they write nothing.
		fresh := mustFleetStores(t) // its namespace and schema are empty: no node opened them
		_, _, err := runFleetVerify(t, fresh)
		if err == nil || !strings.Contains(err.Error(), "no deployment") {
			t.Errorf("verify of an unopened namespace: %v", err)
		}
		var out bytes.Buffer
		err = (&ExportCommand{Getenv: envMap(nil), Stdout: &out, Stderr: &out}).Run(t.Context(),
			[]string{"--postgres-url", fresh.postgresURL, "--postgres-schema", fresh.schema})
		if err == nil || !strings.Contains(err.Error(), "no ledger") {
			t.Errorf("export of an unopened schema: %v", err)
		}
		conn := connectLedger(t, fresh)
		var n int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1`, fresh.schema).Scan(&n); err != nil || n != 0 {
			t.Errorf("schema %s created by verify or export: %d, %v", fresh.schema, n, err)
		}
		c, err := redis.Dial(t.Context(), fresh.redisURL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if n, err := c.Exists(t.Context(), fresh.namespace+":meta").Result(); err != nil || n != 0 {
			t.Errorf("namespace %s opened by verify: %d, %v", fresh.namespace, n, err)
		}
	})
	t.Run("ErrUsage", func(t *testing.T) {
		for _, args := range [][]string{
			{"--redis-url", "redis://127.0.0.1:6379/0"},
			{"--postgres-url", "postgres://127.0.0.1/test"},
			{"--redis-url", "redis://127.0.0.1:6379/0", "--postgres-url", "postgres://127.0.0.1/test", "--postgres-schema", "no-dashes"},
		} {
			var out bytes.Buffer
			err := (&VerifyCommand{Getenv: envMap(nil), Stdout: &out, Stderr: &out}).Run(t.Context(), args)
			if exitCode(err) != exitUsage {
				t.Errorf("verify %q: %v, want a usage error", args, err)
			}
		}
		// export reads only the ledger: a Redis URL alone is not enough.
		var out bytes.Buffer
		err := (&ExportCommand{Getenv: envMap(nil), Stdout: &out, Stderr: &out}).Run(t.Context(), []string{"--redis-url", "redis://127.0.0.1:6379/0"})
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "needs --postgres-url") {
			t.Errorf("export with a Redis URL alone: %v, want a usage error", err)
		}
	})
}

// ledgerIDs returns the ids of sku's reservations in the fleet's ledger, in id order.
func ledgerIDs(t *testing.T, f *fleetStores, sku string) []string {
	t.Helper()
	conn := connectLedger(t, f)
	rows, err := conn.Query(t.Context(), `SELECT id FROM reservations WHERE sku = $1 ORDER BY id`, sku)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// tamperLedger runs statements on the fleet's ledger, as a damaged ledger would look.
func tamperLedger(t *testing.T, f *fleetStores, stmts ...string) {
	t.Helper()
	conn := connectLedger(t, f)
	for _, s := range stmts {
		if _, err := conn.Exec(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// connectLedger connects to the fleet's schema, closed at the end of the test.
func connectLedger(t *testing.T, f *fleetStores) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.postgresURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = f.schema
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(t.Context()) })
	return conn
}
