package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/revenueguard/revguard/internal/tick"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
)

// roomLogCopyEvery is how often a node copies the rooms' new audit records from Redis
// into the PostgreSQL ledger.
const roomLogCopyEvery = time.Second

// roomLogCopyBatch bounds the records of one copy transaction.
const roomLogCopyBatch = 5000

// copyRoomLogs copies into the ledger every record of every room's Redis stream that
// the ledger does not have yet, and returns how many; each batch copied is then trimmed
// from the stream. Nodes copying at once, or a copy repeated after a failure, store
// each record once (postgres.RoomLog keys them by their stream position).
func copyRoomLogs(ctx context.Context, room *redis.WaitingRoom, ledger *postgres.RoomLog) (int, error) {
	skus, err := room.Rooms(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sku := range skus {
		last, err := ledger.LastSeq(ctx, sku)
		if err != nil {
			return n, err
		}
		for {
			recs, err := room.ReadRoomRecordsAfter(ctx, sku, last, roomLogCopyBatch)
			if err != nil {
				return n, err
			}
			if len(recs) == 0 {
				break // this room is copied: on to the next
			}
			if err := ledger.CopyRoomRecords(ctx, recs); err != nil {
				return n, err
			}
			n += len(recs)
			last = recs[len(recs)-1].Seq
			if err := room.TrimRoomRecords(ctx, sku, last); err != nil {
				return n, err
			}
			if len(recs) < roomLogCopyBatch {
				break
			}
		}
	}
	return n, nil
}

// runRoomLogCopy copies the rooms' records into the ledger every roomLogCopyEvery until
// ctx ends; a failure is logged and the next round retries.
func runRoomLogCopy(ctx context.Context, room *redis.WaitingRoom, ledger *postgres.RoomLog, log *slog.Logger) {
	tick.Every(ctx, roomLogCopyEvery, func() {
		if _, err := copyRoomLogs(ctx, room, ledger); err != nil && ctx.Err() == nil {
			log.Warn("waiting rooms: copy the audit records into the ledger", "err", err)
		}
	})
}
