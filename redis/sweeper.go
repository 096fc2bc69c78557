package redis

import (
	"context"
	"strconv"

	"github.com/revenueguard/revguard/internal/tick"
)

// sweepBatch is how many SKUs (and old reservations) one sweep script handles, so
// that a backlog never makes one script block the shard for long.
const sweepBatch = 256

// maxSweepRounds bounds the scripts per shard and sweep: the next sweep goes on.
const maxSweepRounds = 64

// runSweeper is the sweeper goroutine: Open starts it, and it returns once Close
// cancels ctx. Every SweepInterval it sweeps each shard: it expires the holds of the
// SKUs filed as due (the shard's due set, never a scan of the SKUs) and purges the
// reservations final for longer than Retention. Every node runs one; they may sweep a
// shard at once, since the script re-checks each hold under Redis's atomicity, so a
// hold is expired, and journaled, once.
func (inv *Inventory) runSweeper(ctx context.Context) {
	defer inv.wg.Done()
	failing := false
	tick.Every(ctx, inv.SweepInterval, func() {
		err := inv.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			inv.Logger.Error("redis: sweep due holds; retrying", "err", err)
			failing = true
		case err == nil && failing:
			inv.Logger.Info("redis: sweeping due holds again")
			failing = false
		}
	})
}

// Sweep expires every hold that is due and purges the reservations that have been
// final for longer than Retention, in every shard. The sweeper calls it; tools and
// tests may too.
func (inv *Inventory) Sweep(ctx context.Context) error {
	if err := inv.writable(ctx); err != nil {
		return err
	}
	var first error
	for shard, tag := range inv.tags {
		for round := 0; round < maxSweepRounds; round++ {
			now := inv.now()
			cutoff := inv.clock().Add(-inv.Retention)
			r, err := inv.run(ctx, "sweep", inv.sc.sweep, tag+":due", tag, shard, now, sweepBatch, formatTime(cutoff))
			if err != nil {
				if first == nil {
					first = err
				}
				break
			}
			skus, _ := strconv.Atoi(r[0])
			old, _ := strconv.Atoi(r[1])
			if skus < sweepBatch && old < sweepBatch {
				break
			}
		}
	}
	return first
}
