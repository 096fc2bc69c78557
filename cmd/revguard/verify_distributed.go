package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
)

// purgeSlack is how much longer than the inventory's retention a final reservation may
// have been final and still be expected in Redis: the sweepers purge it within a
// sweep of the deadline, and the clocks of Redis and of verify differ a little.
const purgeSlack = time.Minute

// runDistributed is `revguard verify` in distributed mode. The fleet has no global
// position to compare both sides at, as the embedded journal's seq is: verify waits
// until the ledger has every event of the outbox streams (nothing pending or
// undelivered, for at most wait), then compares the engine state in Redis
// (Inventory.ForEachReservation, and each SKU's counts) with the PostgreSQL ledger.
// Beside a running fleet a reservation may change between the two reads: whatever
// differs is compared again after the ledger has caught up once more, and only what
// differs both times is reported. A reservation that Redis has purged (final for longer
// than the retention) is in the ledger only, and is not compared.
func (c *VerifyCommand) runDistributed(ctx context.Context, s *storeFlags, wait, retention time.Duration) error {
	redis.SetLogger(slog.New(slog.DiscardHandler)) // the command says what failed, once
	client, err := redis.Dial(ctx, s.redisURL)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer client.Close()
	inv := redis.NewInventory(client)
	inv.Namespace = s.namespace
	inv.Retention = retention // the fleet's: what it purged is the ledger's alone
	inv.Logger = slog.New(slog.DiscardHandler)
	// Read-only: no sweeper (expiring due holds is the fleet's job), nothing stored,
	// and a namespace no fleet has opened is an error, not a new one.
	inv.ReadOnly = true
	if err := inv.Open(ctx); err != nil {
		return fmt.Errorf("verify: open the Redis inventory: %w", err)
	}
	defer inv.Close()
	db, err := openPostgresLedger(ctx, s)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer db.Close()
	fv := &fleetVerify{inv: inv, ledger: postgres.NewLedger(db), outbox: redis.NewOutbox(client), poll: c.Poll}
	fv.outbox.Namespace = s.namespace

	if err := fv.waitDrained(ctx, wait); err != nil {
		return err
	}
	first, err := fv.compare(ctx)
	if err != nil {
		return err
	}
	final := first
	if len(first.diffs) > 0 {
		// Compare again once the ledger has caught up with whatever changed meanwhile.
		if err := fv.waitDrained(ctx, wait); err != nil {
			return err
		}
		second, err := fv.compare(ctx)
		if err != nil {
			return err
		}
		final = second
		final.diffs = slices.DeleteFunc(second.diffs, func(d keyedDiff) bool {
			return !slices.ContainsFunc(first.diffs, func(f keyedDiff) bool { return f.key == d.key })
		})
	}
	for _, d := range final.diffs {
		fmt.Fprintln(c.Stdout, d.text)
	}
	if len(final.diffs) > 0 {
		return fmt.Errorf("verify: %d differences between the PostgreSQL ledger and the engine state in Redis", len(final.diffs))
	}
	fmt.Fprintf(c.Stderr, "verify: ledger matches the engine: %d reservations and %d SKUs in Redis namespace %s, PostgreSQL schema %s",
		final.reservations, final.skus, s.namespace, s.schema)
	if final.purged > 0 {
		fmt.Fprintf(c.Stderr, " (%d purged from Redis after the retention, in the ledger only, not compared)", final.purged)
	}
	fmt.Fprintln(c.Stderr)
	return nil
}

// fleetVerify reads both sides of a distributed verify.
type fleetVerify struct {
	inv    *redis.Inventory
	ledger *postgres.Ledger
	outbox *redis.Outbox // for its Backlog only: verify never consumes
	poll   time.Duration
}

// keyedDiff is one difference, with the reservation or SKU it is about.
type keyedDiff struct{ key, text string }

// comparison is the result of one compare.
type comparison struct {
	diffs                      []keyedDiff
	reservations, skus, purged int
}

// waitDrained waits until no outbox entry is pending or undelivered, for at most wait.
func (fv *fleetVerify) waitDrained(ctx context.Context, wait time.Duration) error {
	poll := fv.poll
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	deadline := time.Now().Add(wait)
	for {
		bl, err := fv.outbox.Backlog(ctx)
		if err != nil {
			return fmt.Errorf("verify: read the outbox: %w", err)
		}
		if bl.Events() == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("verify: the ledger still lacks %d events of the outbox (%d pending with a node, %d undelivered) after %s: "+
				"a running fleet's outbox may be failing (see the nodes' logs and revguard_ledger_lag metrics); "+
				"with every node stopped, the ledger catches up when one starts", bl.Events(), bl.Pending, bl.Undelivered, wait)
		}
		t := time.NewTimer(min(poll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("verify: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// compare reads the engine state and the ledger and returns their differences: every
// reservation kept in Redis must be in the ledger once with equal fields, every
// reservation of the ledger must be in Redis unless purged, and each SKU's counts
// must add up (available + held + sold = stock, none negative) and equal its
// reservations' held and confirmed units.
func (fv *fleetVerify) compare(ctx context.Context) (comparison, error) {
	var out comparison
	var engine []revguard.Reservation
	type units struct{ held, sold int64 }
	bySKU := map[string]units{}
	err := fv.inv.ForEachReservation(ctx, func(r revguard.Reservation) bool {
		engine = append(engine, r)
		u := bySKU[r.SKU]
		switch r.Status {
		case revguard.StatusHeld:
			u.held += r.Quantity
		case revguard.StatusConfirmed:
			u.sold += r.Quantity
		}
		bySKU[r.SKU] = u
		return true
	})
	if err != nil {
		return out, fmt.Errorf("verify: read the engine's reservations: %w", err)
	}
	err = fv.inv.ForEachSKU(ctx, func(sku revguard.SKU) bool {
		out.skus++
		u := bySKU[sku.ID]
		add := func(format string, args ...any) {
			out.diffs = append(out.diffs, keyedDiff{"sku " + sku.ID, fmt.Sprintf("SKU %s: ", sku.ID) + fmt.Sprintf(format, args...)})
		}
		switch {
		case sku.Available < 0 || sku.Held < 0 || sku.Sold < 0 || sku.Available+sku.Held+sku.Sold != sku.Stock:
			add("counts do not add up: stock %d, available %d, held %d, sold %d", sku.Stock, sku.Available, sku.Held, sku.Sold)
		case u.held != sku.Held || u.sold != sku.Sold:
			add("counts held %d and sold %d, its reservations hold %d and sold %d", sku.Held, sku.Sold, u.held, u.sold)
		}
		return true
	})
	if err != nil {
		return out, fmt.Errorf("verify: read the engine's SKUs: %w", err)
	}
	inEngine := make(map[string]bool, len(engine))
	for _, r := range engine {
		inEngine[r.ID] = true
	}

	scan, err := fv.ledger.Scan(ctx, postgres.ScanFilter{})
	if err != nil {
		return out, fmt.Errorf("verify: %w", err)
	}
	defer scan.Close()
	purgedBefore := time.Now().Add(-fv.inv.Retention - purgeSlack)
	var ledger []revguard.Reservation
	for scan.Next() {
		r := scan.Reservation()
		if !inEngine[r.ID] && r.Status.Final() && finalAt(r).Before(purgedBefore) {
			out.purged++
			continue
		}
		ledger = append(ledger, r)
	}
	if err := scan.Err(); err != nil {
		return out, fmt.Errorf("verify: %w", err)
	}
	for _, d := range revguard.DiffLedger(engine, ledger) {
		out.diffs = append(out.diffs, keyedDiff{d.ID, d.String()})
	}
	out.reservations = len(engine)
	return out, nil
}

// finalAt is when r became final: its confirm, its release, or its deadline (the
// expiry happens at it, journaled within a sweep).
func finalAt(r revguard.Reservation) time.Time {
	switch r.Status {
	case revguard.StatusConfirmed:
		return r.ConfirmedAt
	case revguard.StatusReleased:
		return r.ReleasedAt
	}
	return r.ExpiresAt
}
