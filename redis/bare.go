package redis

import "context"

// BareReserve runs the reserve script (lua/reserve.lua) for one unit of the SKU id
// with go-redis directly, one round trip: no request checks, no
// idempotency key, no decoding of the answer beyond the error. It is the yardstick
// that the benchmarks measure Reserve and the HTTP API against (issue 10's goal: one
// node at 0.7 or more of its rate), and changes the SKU as Reserve would. It refuses
// nothing itself: the script's refusals (sold out, limit) are not errors here.
func (inv *Inventory) BareReserve(ctx context.Context, id, customerID string) error {
	if err := inv.writable(ctx); err != nil {
		return err
	}
	tag, shard, key := inv.skuKey(id)
	if err := inv.sc.reserve.Run(ctx, inv.client, []string{key}, tag, shard, inv.now(), id, customerID, 1, "").Err(); err != nil {
		return storeErr("reserve", err)
	}
	return nil
}
