package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
	"github.com/valyala/fasthttp"
)

// The floor yardsticks (variants floor and floorfast) are the bare handlers with the
// engine behind them: each 201 is a real hold of the SKU "hot", durable (journal
// fsync on, as in revguard serve) before the answer. Nothing else of the gateway runs:
// no session, no middleware, no idempotency, no metrics, no ledger. So floor is the
// most a gateway on net/http can reach on this machine, and floorfast the same on
// fasthttp; reserve ÷ floor is what the gateway itself costs.

// floorCustomerHolds is how many holds one customer id makes before the next takes
// over (the SKU's per-customer limit is far above).
const floorCustomerHolds = 100_000

// floorEngine is the engine of a floor yardstick: a journal and an inventory in dir,
// with the SKU "hot" of unlimited stock.
type floorEngine struct {
	j     *journal.Journal
	inv   *inproc.Inventory
	holds atomic.Int64
}

func openFloor(ctx context.Context, dir string) (*floorEngine, error) {
	j := journal.New(filepath.Join(dir, "journal"))
	j.Logger = slog.New(slog.DiscardHandler)
	if err := j.Open(ctx); err != nil {
		return nil, err
	}
	inv := inproc.NewInventory(j, filepath.Join(dir, "snapshots"))
	inv.Logger = slog.New(slog.DiscardHandler)
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

// hold reserves quantity units of "hot" and returns the reservation's id once durable.
func (e *floorEngine) hold(ctx context.Context, quantity int64) (string, error) {
	customer := "floor-" + strconv.FormatInt(e.holds.Add(1)/floorCustomerHolds, 10)
	res, _, err := e.inv.Reserve(ctx, revguard.ReserveRequest{SKU: "hot", CustomerID: customer, Quantity: quantity})
	return res.ID, err
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
	if err == nil {
		if fast {
			err = fasthttp.ListenAndServe(addr, bareFast(e.hold))
		} else {
			err = http.ListenAndServe(addr, bareMux(e.hold))
		}
	}
	fmt.Fprintln(os.Stderr, "floor handler:", err)
	os.Exit(1)
}
