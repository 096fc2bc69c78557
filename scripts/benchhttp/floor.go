package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
)

// The floor yardsticks (variants floor and floorfast) are the bare handlers with the
// engine behind them: each 201 is a real hold of the SKU "hot", durable (journal
// fsync on, as in revguard serve) before the answer, whose body is the API's own
// encoding of the reservation (httpapi.AppendReservation, cheaper than the bare
// handler's encoding/json). Nothing else of the gateway runs: no session, no
// middleware, no idempotency, no metrics, no ledger. So floor is about the most a
// gateway on net/http can do per hold on this machine (its request decoding is still
// encoding/json's), and floorfast the same on fasthttp; reserve ÷ floor is what the
// gateway's other layers cost.

// floorCustomerHolds is how many holds one customer id makes before the next takes
// over (far below the SKU's per-customer limit of units at any quantity the script
// sends).
const floorCustomerHolds = 100_000

// floorEngine is the engine of a floor yardstick: a journal and an inventory in dir,
// with the SKU "hot" of unlimited stock.
type floorEngine struct {
	j     *journal.Journal
	inv   *inproc.Inventory
	holds atomic.Int64
}

func openFloor(ctx context.Context, dir string) (*floorEngine, error) {
	// Warnings and errors go to stderr: the script keeps it as the process's log.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	j := journal.New(filepath.Join(dir, "journal"))
	j.Logger = logger
	if err := j.Open(ctx); err != nil {
		return nil, err
	}
	inv := inproc.NewInventory(j, filepath.Join(dir, "snapshots"))
	inv.Logger = logger
	if err := inv.Open(ctx); err != nil {
		j.Close()
		return nil, err
	}
	e := &floorEngine{j: j, inv: inv}
	u := revguard.SKUUpdate{Stock: revguard.MaxStock, PerCustomerLimit: revguard.MaxPerCustomerLimit, HoldSeconds: 86400}
	if _, _, err := inv.PutSKU(ctx, "hot", u); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// hold reserves quantity units of "hot" and, once the hold is durable, returns the
// reservation as the API writes it.
func (e *floorEngine) hold(ctx context.Context, quantity int64) ([]byte, error) {
	customer := "floor-" + strconv.FormatInt(e.holds.Add(1)/floorCustomerHolds, 10)
	res, _, err := e.inv.Reserve(ctx, revguard.ReserveRequest{SKU: "hot", CustomerID: customer, Quantity: quantity})
	if err != nil {
		return nil, err
	}
	return append(httpapi.AppendReservation(make([]byte, 0, 512), &res), '\n'), nil
}

func (e *floorEngine) close() error {
	err := e.inv.Close()
	if jerr := e.j.Close(); err == nil {
		err = jerr
	}
	return err
}

// serveFloor serves a floor yardstick (fast: on fasthttp) on addr, its engine in dir,
// until killed.
func serveFloor(addr, dir string, fast bool) {
	e, err := openFloor(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	serveYardstick(addr, fast, e.hold)
}
