package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

// shardKey returns the tag of the SKU id's shard, its number, and the key name.
func (inv *Inventory) skuKey(id string) (tag string, shard int, key string) {
	shard = shardOf(id, inv.Shards)
	tag = inv.tags[shard]
	return tag, shard, tag + ":sku:" + id
}

// resKey returns the tag, shard and hash key of the reservation id, or false when id is
// not a reservation id of this deployment.
func (inv *Inventory) resKey(id string) (tag string, shard int, key string, ok bool) {
	shard, ok = ParseID(id, inv.Shards)
	if !ok {
		return "", 0, "", false
	}
	tag = inv.tags[shard]
	return tag, shard, tag + ":res:" + id, true
}

// run runs the script s on the shard's key and returns its reply as strings.
func (inv *Inventory) run(ctx context.Context, op string, s *goredis.Script, key string, args ...any) ([]string, error) {
	v, err := s.Run(ctx, inv.client, []string{key}, args...).Result()
	if err != nil {
		return nil, storeErr(op, err)
	}
	out, err := replyStrings(v)
	if err != nil || len(out) == 0 {
		return nil, fmt.Errorf("redis: %s: bad script reply: %v", op, err)
	}
	return out, nil
}

// PutSKU implements revguard.Inventory. It refuses what revguard.CheckPut refuses.
func (inv *Inventory) PutSKU(ctx context.Context, id string, u revguard.SKUUpdate) (revguard.SKU, bool, error) {
	if err := inv.writable(ctx); err != nil {
		return revguard.SKU{}, false, err
	}
	if err := revguard.CheckPut(id, u); err != nil {
		return revguard.SKU{}, false, err
	}
	tag, shard, key := inv.skuKey(id)
	r, err := inv.run(ctx, "put SKU", inv.sc.put, key, tag, shard, inv.now(), id,
		u.Stock, u.PerCustomerLimit, u.HoldSeconds, formatTime(u.OpensAt))
	if err != nil {
		return revguard.SKU{}, false, err
	}
	if r[0] == string(revguard.CodeStockBelowCommitted) && len(r) == 3 {
		return revguard.SKU{}, false, revguard.Errorf(revguard.CodeStockBelowCommitted,
			"stock %s is below the %s units held or sold", r[1], r[2])
	}
	s, err := decodeSKU(id, r)
	if err != nil {
		return revguard.SKU{}, false, err
	}
	return s, r[0] == "created", nil
}

// decodeSKU decodes the reply {"ok"|"created", stock, held, sold, limit, hold, opens}.
func decodeSKU(id string, r []string) (revguard.SKU, error) {
	if r[0] != "ok" && r[0] != "created" {
		return revguard.SKU{}, replyErr(r)
	}
	if len(r) != 7 {
		return revguard.SKU{}, fmt.Errorf("redis: SKU %s: bad reply %q", id, r)
	}
	var n [5]int64
	for i := range n {
		v, err := strconv.ParseInt(r[1+i], 10, 64)
		if err != nil {
			return revguard.SKU{}, fmt.Errorf("redis: SKU %s: bad count %q", id, r[1+i])
		}
		n[i] = v
	}
	opens, ok := parseTime(r[6])
	if !ok {
		return revguard.SKU{}, fmt.Errorf("redis: SKU %s: bad opens_at %q", id, r[6])
	}
	return revguard.SKU{ID: id, Stock: n[0], Held: n[1], Sold: n[2], Available: n[0] - n[1] - n[2],
		PerCustomerLimit: n[3], HoldSeconds: n[4], OpensAt: opens}, nil
}

// replyErr turns a script's refusal {code, details...} into the domain error.
func replyErr(r []string) error {
	code := revguard.Code(r[0])
	arg := func(i int) string {
		if i < len(r) {
			return r[i]
		}
		return ""
	}
	at := func(i int) string {
		t, _ := parseTime(arg(i))
		return t.Format(time.RFC3339Nano)
	}
	switch code {
	case revguard.CodeSKUNotFound:
		return revguard.Errorf(code, "no such SKU")
	case revguard.CodeReservationNotFound:
		return revguard.Errorf(code, "no such reservation")
	case revguard.CodeSaleNotOpen:
		return revguard.Errorf(code, "the sale opens at %s", at(1))
	case revguard.CodeSoldOut:
		if arg(1) == "revive" {
			return revguard.Errorf(code, "the units of the expired hold are no longer available") // as inproc's
		}
		return revguard.Errorf(code, "not enough units available")
	case revguard.CodeLimitExceeded:
		return revguard.Errorf(code, "the limit is %s units per customer; %s already held or bought", arg(1), arg(2))
	case revguard.CodeIdempotencyKeyReused:
		return revguard.Errorf(code, "idempotency key already used for %s units of SKU %s", arg(2), arg(1))
	case revguard.CodeHoldExpired:
		return revguard.Errorf(code, "the hold expired at %s", at(1))
	case revguard.CodeHoldReleased:
		return revguard.Errorf(code, "the reservation was released")
	case revguard.CodeAlreadyConfirmed:
		return revguard.Errorf(code, "the reservation is confirmed")
	}
	return fmt.Errorf("redis: unexpected script reply %q", r)
}

// FindSKU implements revguard.Inventory: it expires the SKU's due holds first.
func (inv *Inventory) FindSKU(ctx context.Context, id string) (revguard.SKU, error) {
	if err := inv.readable(ctx); err != nil {
		return revguard.SKU{}, err
	}
	if !revguard.ValidSKUID(id) {
		return revguard.SKU{}, errSKUNotFound(id)
	}
	tag, shard, key := inv.skuKey(id)
	r, err := inv.run(ctx, "find SKU", inv.sc.findSKU, key, tag, shard, inv.now(), id)
	if err != nil {
		return revguard.SKU{}, err
	}
	if r[0] == string(revguard.CodeSKUNotFound) {
		return revguard.SKU{}, errSKUNotFound(id)
	}
	return decodeSKU(id, r)
}

func errSKUNotFound(id string) error {
	return revguard.Errorf(revguard.CodeSKUNotFound, "no SKU %q", id)
}

func errResNotFound(id string) error {
	return revguard.Errorf(revguard.CodeReservationNotFound, "no reservation %q", id)
}

// Availability implements revguard.Inventory in one round trip without a script: it
// reads the SKU's counts and its earliest hold deadline together. Only when a hold is
// due at the inventory's clock (which the sweepers have not expired yet) does it go
// through FindSKU, which expires it.
func (inv *Inventory) Availability(ctx context.Context, id string) (revguard.Availability, error) {
	if err := inv.readable(ctx); err != nil {
		return revguard.Availability{}, err
	}
	if !revguard.ValidSKUID(id) {
		return revguard.Availability{}, errSKUNotFound(id)
	}
	tag, _, key := inv.skuKey(id)
	pipe := inv.client.Pipeline()
	counts := pipe.HMGet(ctx, key, "stock", "held", "sold", "opens")
	due := pipe.ZScore(ctx, tag+":due", id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return revguard.Availability{}, storeErr("read availability", err)
	}
	v := counts.Val()
	if len(v) != 4 || v[0] == nil {
		return revguard.Availability{}, errSKUNotFound(id)
	}
	if d, err := due.Result(); err == nil && d <= float64(inv.clockMicros()) {
		s, err := inv.FindSKU(ctx, id)
		if err != nil {
			return revguard.Availability{}, err
		}
		return revguard.Availability{SKU: id, Available: s.Available, SoldOut: s.Available <= 0, OpensAt: s.OpensAt}, nil
	}
	var n [3]int64
	for i := range n {
		s, _ := v[i].(string)
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return revguard.Availability{}, fmt.Errorf("redis: SKU %s: bad count %q", id, s)
		}
		n[i] = x
	}
	os, _ := v[3].(string)
	opens, ok := parseTime(os)
	if !ok {
		return revguard.Availability{}, fmt.Errorf("redis: SKU %s: bad opens_at %q", id, os)
	}
	avail := n[0] - n[1] - n[2]
	return revguard.Availability{SKU: id, Available: avail, SoldOut: avail <= 0, OpensAt: opens}, nil
}

// clock reads the inventory's clock; with Now nil, the local clock, which may be a
// little apart from Redis's: the scripts decide with Redis's.
func (inv *Inventory) clock() time.Time {
	if inv.Now == nil {
		return time.Now()
	}
	return inv.Now()
}

// clockMicros returns the clock in unix microseconds, the unit of the deadlines in the
// sorted sets.
func (inv *Inventory) clockMicros() int64 { return inv.clock().UnixMicro() }
