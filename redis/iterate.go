package redis

import (
	"context"
	"errors"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

// iterChunk is the ids read per round trip by ForEachSKU and ForEachReservation.
const iterChunk = 512

// ForEachSKU calls fn with the state of every SKU, shard by shard and in id order
// within a shard, until fn returns false. It reads each shard's SKU index in chunks
// (no SCAN, so no SKU is reported twice), each SKU atomically; holds past their
// deadline that no one has expired yet are reported held, as stored.
func (inv *Inventory) ForEachSKU(ctx context.Context, fn func(revguard.SKU) bool) error {
	if err := inv.readable(ctx); err != nil {
		return err
	}
	return inv.forEachID(ctx, ":skus", func(tag string, ids []string) (bool, error) {
		pipe := inv.client.Pipeline()
		cmds := make([]*goredis.SliceCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.HMGet(ctx, tag+":sku:"+id, "stock", "held", "sold", "limit", "hold", "opens")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return false, storeErr("read SKUs", err)
		}
		for i, id := range ids {
			v := cmds[i].Val()
			if len(v) == 0 || v[0] == nil {
				continue
			}
			r := make([]string, 1, 7)
			r[0] = "ok"
			for _, x := range v {
				s, _ := x.(string)
				r = append(r, s)
			}
			s, err := decodeSKU(id, r)
			if err != nil {
				return false, err
			}
			if !fn(s) {
				return false, nil
			}
		}
		return true, nil
	})
}

// ForEachReservation calls fn with every reservation still kept in Redis (held ones,
// and final ones for Retention), shard by shard in id order, until fn returns false.
// Each is read atomically, as stored (see ForEachSKU), and reported once.
func (inv *Inventory) ForEachReservation(ctx context.Context, fn func(revguard.Reservation) bool) error {
	if err := inv.readable(ctx); err != nil {
		return err
	}
	return inv.forEachID(ctx, ":ids", func(tag string, ids []string) (bool, error) {
		pipe := inv.client.Pipeline()
		cmds := make([]*goredis.SliceCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.HMGet(ctx, tag+":res:"+id, resFields...)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return false, storeErr("read reservations", err)
		}
		for i, id := range ids {
			v := cmds[i].Val()
			if len(v) == 0 || v[0] == nil {
				continue // purged meanwhile
			}
			s := make([]string, len(v))
			for j, x := range v {
				s[j], _ = x.(string)
			}
			r, err := decodeRes(id, s)
			if err != nil {
				return false, err
			}
			if !fn(r) {
				return false, nil
			}
		}
		return true, nil
	})
}

// forEachID walks the index zset (all scores 0, so ordered by member) named suffix of
// every shard by chunks, calling chunk until it reports false or fails.
func (inv *Inventory) forEachID(ctx context.Context, suffix string, chunk func(tag string, ids []string) (bool, error)) error {
	for _, tag := range inv.tags {
		start := "-"
		for {
			ids, err := inv.client.ZRangeArgs(ctx, goredis.ZRangeArgs{
				Key: tag + suffix, Start: start, Stop: "+", ByLex: true, Count: iterChunk,
			}).Result()
			if err != nil {
				return storeErr("read index", err)
			}
			if len(ids) == 0 {
				break
			}
			more, err := chunk(tag, ids)
			if err != nil || !more {
				return err
			}
			if len(ids) < iterChunk {
				break
			}
			start = "(" + ids[len(ids)-1]
		}
	}
	return nil
}
