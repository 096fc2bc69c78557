package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

// resFields are the fields of a reservation hash, in the order of a script's
// reservation reply after its code and id.
var resFields = []string{"sku", "cust", "qty", "status", "created", "expires", "confirmed", "released", "ref"}

// decodeRes decodes a reservation: its id and the values of resFields.
func decodeRes(id string, v []string) (revguard.Reservation, error) {
	if len(v) != len(resFields) {
		return revguard.Reservation{}, fmt.Errorf("redis: reservation %s: %d fields, want %d", id, len(v), len(resFields))
	}
	qty, err := strconv.ParseInt(v[2], 10, 64)
	st := revguard.Status(v[3])
	var t [4]time.Time
	ok := err == nil && st.Valid()
	for i := range t {
		var good bool
		t[i], good = parseTime(v[4+i])
		ok = ok && good
	}
	if !ok {
		return revguard.Reservation{}, fmt.Errorf("redis: reservation %s: corrupt %q", id, v)
	}
	return revguard.Reservation{ID: id, SKU: v[0], CustomerID: v[1], Quantity: qty, Status: st,
		CreatedAt: t[0], ExpiresAt: t[1], ConfirmedAt: t[2], ReleasedAt: t[3], OrderRef: v[8]}, nil
}

// resReply decodes a script's reply {code, id, fields...} for the reservation id.
func resReply(id string, r []string) (revguard.Reservation, error) {
	switch {
	case r[0] == string(revguard.CodeReservationNotFound):
		return revguard.Reservation{}, errResNotFound(id)
	case r[0] != "ok" && r[0] != "replay":
		return revguard.Reservation{}, replyErr(r)
	case len(r) != 2+len(resFields):
		return revguard.Reservation{}, fmt.Errorf("redis: reservation %s: bad reply %q", id, r)
	}
	return decodeRes(r[1], r[2:])
}

// Reserve implements revguard.Inventory.
//
// With an idempotency key it takes three steps. It binds the key, under the customer,
// to the SKU and quantity (refused with CodeIdempotencyKeyReused when it is bound to
// others, also by a request in flight on another node). The reserve script then
// replays the key's reservation on the SKU or reserves, recording the key with the
// hold atomically, so that retries on any node never hold twice. A refused reserve
// undoes its binding (refused attempts are not remembered; see unbind.lua).
func (inv *Inventory) Reserve(ctx context.Context, req revguard.ReserveRequest) (revguard.Reservation, bool, error) {
	if err := inv.writable(ctx); err != nil {
		return revguard.Reservation{}, false, err
	}
	if err := req.Check(); err != nil {
		return revguard.Reservation{}, false, err
	}
	if !revguard.ValidSKUID(req.SKU) {
		return revguard.Reservation{}, false, errSKUNotFound(req.SKU)
	}
	if req.IdempotencyKey == "" {
		return inv.reserve(ctx, req)
	}
	bkey := bindingKey(inv.Namespace, req.CustomerID, req.IdempotencyKey)
	if err := inv.bind(ctx, bkey, req); err != nil {
		return revguard.Reservation{}, false, err
	}
	res, replayed, err := inv.reserve(ctx, req)
	if e, ok := errors.AsType[*revguard.Error](err); ok && e.Code != revguard.CodeUnavailable {
		// Refused: nothing was recorded under the key. After a failure to reach
		// Redis the reserve may have happened, so the binding stays.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if uerr := inv.sc.unbind.Run(uctx, inv.client, []string{bkey}).Err(); uerr != nil {
			inv.Logger.Warn("redis: unbind a refused idempotency key; it stays bound to its SKU and quantity",
				"sku", req.SKU, "err", uerr)
		}
		cancel()
	}
	return res, replayed, err
}

// reserve runs the reserve script.
func (inv *Inventory) reserve(ctx context.Context, req revguard.ReserveRequest) (revguard.Reservation, bool, error) {
	tag, shard, key := inv.skuKey(req.SKU)
	r, err := inv.run(ctx, "reserve", inv.sc.reserve, key, tag, shard, inv.now(), req.SKU, req.CustomerID,
		req.Quantity, req.IdempotencyKey)
	if err != nil {
		return revguard.Reservation{}, false, err
	}
	if r[0] == string(revguard.CodeSKUNotFound) {
		return revguard.Reservation{}, false, errSKUNotFound(req.SKU)
	}
	res, err := resReply("", r)
	if err != nil {
		return revguard.Reservation{}, false, err
	}
	return res, r[0] == "replay", nil
}

// IdempotentFlightTTL bounds how long a node's mark of an idempotency key's first
// reserve in flight (ClaimIdempotent) holds: longer than a reserve with its bot check
// takes, short enough that a node that died holding it delays the key's next request
// by that at most.
const IdempotentFlightTTL = 10 * time.Second

// FlightTTL returns IdempotentFlightTTL: how long a request that found a key's mark
// may have to wait for it.
func (inv *Inventory) FlightTTL() time.Duration { return IdempotentFlightTTL }

// ClaimIdempotent marks the first reserve of the customer's idempotency key in flight
// on this node, so that the requests with the key that reach other nodes meanwhile
// wait for its outcome (the gateway's reserve) instead of running their own bot check:
// a double click that a load balancer splits over two nodes sends one token, which
// only one check can spend. It reports whether the mark is this call's (mine) and, in
// the same script, whether the key is already bound (bound: a reserve with it
// succeeded, is under way elsewhere, or ended unsure), in which case the caller looks
// for its reservation before reserving. When the mark is mine, release ends it if it
// is still this call's; it also expires after IdempotentFlightTTL.
func (inv *Inventory) ClaimIdempotent(ctx context.Context, customerID, key string) (release func(), mine, bound bool, err error) {
	if err := inv.writable(ctx); err != nil {
		return nil, false, false, err
	}
	bkey, fkey := flightKeys(inv.Namespace, customerID, key)
	mark := rand.Text()
	r, err := inv.sc.flight.Run(ctx, inv.client, []string{fkey, bkey}, mark, IdempotentFlightTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return nil, false, false, storeErr("claim idempotency key", err)
	}
	if len(r) != 2 {
		return nil, false, false, fmt.Errorf("redis: claim idempotency key: reply %v", r)
	}
	if r[0] != 1 {
		return nil, false, r[1] == 1, nil
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := inv.sc.unflight.Run(uctx, inv.client, []string{fkey}, mark).Err(); err != nil {
			inv.Logger.Warn("redis: end an idempotency key's flight; the key's next request on another node waits for it to expire",
				"err", err, "expires_in", IdempotentFlightTTL)
		}
	}, true, r[1] == 1, nil
}

// bind binds the idempotency key at bkey to the request's SKU and quantity.
func (inv *Inventory) bind(ctx context.Context, bkey string, req revguard.ReserveRequest) error {
	v, err := inv.sc.bind.Run(ctx, inv.client, []string{bkey}, req.SKU, req.Quantity, inv.Retention.Milliseconds()).Result()
	if err != nil {
		return storeErr("bind idempotency key", err)
	}
	b, err := replyStrings(v)
	if err != nil {
		return fmt.Errorf("redis: bind idempotency key: %w", err)
	}
	if len(b) == 2 {
		return revguard.Errorf(revguard.CodeIdempotencyKeyReused, "idempotency key already used for %s units of SKU %s", b[1], b[0])
	}
	return nil
}

// FindIdempotent implements revguard.Inventory. A key bound to the request's SKU and
// quantity whose reserve is still in flight is reported not found.
func (inv *Inventory) FindIdempotent(ctx context.Context, req revguard.ReserveRequest) (revguard.Reservation, bool, error) {
	if err := inv.readable(ctx); err != nil {
		return revguard.Reservation{}, false, err
	}
	if req.IdempotencyKey == "" || req.CustomerID == "" || !revguard.ValidSKUID(req.SKU) {
		return revguard.Reservation{}, false, nil
	}
	tag, _, _ := inv.skuKey(req.SKU)
	pipe := inv.client.Pipeline()
	binding := pipe.HMGet(ctx, bindingKey(inv.Namespace, req.CustomerID, req.IdempotencyKey), "sku", "qty")
	rec := pipe.HGet(ctx, tag+":idem:"+req.SKU, req.CustomerID+"\x00"+req.IdempotencyKey)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return revguard.Reservation{}, false, storeErr("find idempotency key", err)
	}
	if b := binding.Val(); len(b) == 2 && b[0] != nil {
		sku, _ := b[0].(string)
		qty, _ := b[1].(string)
		if sku != req.SKU || qty != strconv.FormatInt(req.Quantity, 10) {
			return revguard.Reservation{}, false, revguard.Errorf(revguard.CodeIdempotencyKeyReused,
				"idempotency key already used for %s units of SKU %s", qty, sku)
		}
	}
	id, err := rec.Result()
	if errors.Is(err, goredis.Nil) {
		return revguard.Reservation{}, false, nil
	}
	res, found, err := inv.readRes(ctx, id)
	if err != nil || !found {
		return revguard.Reservation{}, false, err
	}
	if res.Quantity != req.Quantity {
		return revguard.Reservation{}, false, revguard.Errorf(revguard.CodeIdempotencyKeyReused,
			"idempotency key already used for %d units of SKU %s", res.Quantity, res.SKU)
	}
	// As it was created.
	res.Status, res.ConfirmedAt, res.ReleasedAt, res.OrderRef = revguard.StatusHeld, time.Time{}, time.Time{}, ""
	return res, true, nil
}

// readRes reads the reservation id as stored, without expiring anything.
func (inv *Inventory) readRes(ctx context.Context, id string) (revguard.Reservation, bool, error) {
	_, _, key, ok := inv.resKey(id)
	if !ok {
		return revguard.Reservation{}, false, nil
	}
	v, err := inv.client.HMGet(ctx, key, resFields...).Result()
	if err != nil {
		return revguard.Reservation{}, false, storeErr("read reservation", err)
	}
	if len(v) == 0 || v[0] == nil {
		return revguard.Reservation{}, false, nil
	}
	s := make([]string, len(v))
	for i, x := range v {
		s[i], _ = x.(string)
	}
	r, err := decodeRes(id, s)
	return r, err == nil, err
}

// FindReservation implements revguard.Inventory. It reads the reservation in one round
// trip; only a hold past its deadline at the inventory's clock goes through a script
// that expires the due holds of its SKU.
func (inv *Inventory) FindReservation(ctx context.Context, id string) (revguard.Reservation, error) {
	if err := inv.readable(ctx); err != nil {
		return revguard.Reservation{}, err
	}
	r, found, err := inv.readRes(ctx, id)
	if err != nil {
		return revguard.Reservation{}, err
	}
	if !found {
		return revguard.Reservation{}, errResNotFound(id)
	}
	if r.Status != revguard.StatusHeld || r.ExpiresAt.After(inv.clock()) {
		return r, nil
	}
	tag, shard, key, _ := inv.resKey(id)
	reply, err := inv.run(ctx, "find reservation", inv.sc.findRes, key, tag, shard, inv.now(), id)
	if err != nil {
		return revguard.Reservation{}, err
	}
	return resReply(id, reply)
}

// Confirm implements revguard.Inventory.
func (inv *Inventory) Confirm(ctx context.Context, req revguard.ConfirmRequest) (revguard.Reservation, error) {
	if err := inv.writable(ctx); err != nil {
		return revguard.Reservation{}, err
	}
	if !revguard.ValidOrderRef(req.OrderRef) {
		return revguard.Reservation{}, revguard.Errorf(revguard.CodeInvalidRequest, "invalid order_ref")
	}
	tag, shard, key, ok := inv.resKey(req.ID)
	if !ok || req.CustomerID == "" {
		return revguard.Reservation{}, errResNotFound(req.ID)
	}
	revive := "0"
	if req.Revive {
		revive = "1"
	}
	r, err := inv.run(ctx, "confirm", inv.sc.confirm, key, tag, shard, inv.now(), req.ID, req.CustomerID, req.OrderRef, revive)
	if err != nil {
		return revguard.Reservation{}, err
	}
	return resReply(req.ID, r)
}

// Release implements revguard.Inventory.
func (inv *Inventory) Release(ctx context.Context, id, customerID string) (revguard.Reservation, error) {
	if err := inv.writable(ctx); err != nil {
		return revguard.Reservation{}, err
	}
	tag, shard, key, ok := inv.resKey(id)
	if !ok {
		return revguard.Reservation{}, errResNotFound(id)
	}
	r, err := inv.run(ctx, "release", inv.sc.release, key, tag, shard, inv.now(), id, customerID)
	if err != nil {
		return revguard.Reservation{}, err
	}
	return resReply(id, r)
}
