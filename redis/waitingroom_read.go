package redis

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

// placeOf decodes a place: ticket, joined, admitted_at, until, state, and the room's
// head, rate, sold_out and the SKU's opens_at.
func (w *WaitingRoom) placeOf(sku, customer string, r []string) (revguard.Place, error) {
	if len(r) != 9 {
		return revguard.Place{}, fmt.Errorf("redis: place in %s: bad reply %q", sku, r)
	}
	atoi := func(s string) (int64, error) {
		if s == "" { // a room never advanced
			return 0, nil
		}
		return strconv.ParseInt(s, 10, 64)
	}
	ticket, err1 := atoi(r[0])
	head, err2 := atoi(r[5])
	rate, err3 := atoi(r[6])
	joined, ok1 := parseTime(r[1])
	adm, ok2 := parseTime(r[2])
	until, ok3 := parseTime(r[3])
	opens, ok4 := parseTime(r[8])
	if err := errors.Join(err1, err2, err3); err != nil || !ok1 || !ok2 || !ok3 || !ok4 {
		return revguard.Place{}, fmt.Errorf("redis: place in %s: bad reply %q", sku, r)
	}
	p := revguard.Place{SKU: sku, CustomerID: customer, JoinedAt: joined, OpensAt: opens,
		AdmittedAt: adm, AdmittedUntil: until, EstimatedWait: -1}
	state := r[4]
	switch {
	case state == "u":
		p.Status = revguard.PlaceUsed
	case state == "c" || state == "a" && w.now().Before(until):
		p.Status = revguard.PlaceAdmitted
	case state == "a":
		p.Status = revguard.PlaceExpired
	case r[7] == "1":
		p.Status = revguard.PlaceSoldOut
	case ticket == 0:
		p.Status = revguard.PlacePreQueue
	default:
		p.Status = revguard.PlaceWaiting
		p.Position = max(1, ticket-head)
		if rate > 0 {
			p.EstimatedWait = time.Duration(p.Position) * time.Second / time.Duration(rate)
		}
	}
	return p, nil
}

// FindPlace implements revguard.WaitingRoom: three reads in one round trip, no script.
func (w *WaitingRoom) FindPlace(ctx context.Context, sku, customerID string) (revguard.Place, error) {
	if err := w.inv.readable(ctx); err != nil {
		return revguard.Place{}, err
	}
	tag, _, skuKey := w.inv.skuKey(sku)
	var place *goredis.StringCmd
	var room *goredis.SliceCmd
	var opens *goredis.StringCmd
	_, err := w.inv.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		place = p.HGet(ctx, tag+":rplace:"+sku, customerID)
		room = p.HMGet(ctx, tag+":room:"+sku, "on", "head", "rate", "sold_out")
		opens = p.HGet(ctx, skuKey, "opens")
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return revguard.Place{}, storeErr("find place", err)
	}
	rv := room.Val()
	if len(rv) != 4 || rv[0] != "1" {
		return revguard.Place{}, errNoRoom(sku)
	}
	v, err := place.Result()
	if errors.Is(err, goredis.Nil) {
		return revguard.Place{}, revguard.Errorf(revguard.CodePlaceNotFound, "no place in the waiting room of SKU %s: join it first", sku)
	}
	parts := strings.Split(v, "|")
	if len(parts) != 5 {
		return revguard.Place{}, fmt.Errorf("redis: place of %s: bad value %q", sku, v)
	}
	str := func(x any) string { s, _ := x.(string); return s }
	return w.placeOf(sku, customerID, append(parts, str(rv[1]), str(rv[2]), str(rv[3]), opens.Val()))
}

// Rooms returns the SKUs of the namespace that have (or had) a waiting room, sorted.
func (w *WaitingRoom) Rooms(ctx context.Context) ([]string, error) {
	skus, err := w.inv.client.SMembers(ctx, w.roomsKey()).Result()
	if err != nil {
		return nil, storeErr("list rooms", err)
	}
	slices.Sort(skus)
	return skus, nil
}

// ReadRoomRecords calls fn with every record of the SKU's room log, in order (the
// read side of revguard.RoomLog, for revguard export).
func (w *WaitingRoom) ReadRoomRecords(ctx context.Context, sku string, fn func(revguard.RoomRecord) error) error {
	tag, _, _ := w.inv.skuKey(sku)
	key := tag + ":rlog:" + sku
	start := "-"
	var seq int64
	for {
		msgs, err := w.inv.client.XRangeN(ctx, key, start, "+", 1000).Result()
		if err != nil {
			return storeErr("read room log", err)
		}
		for _, m := range msgs {
			seq++
			rec, err := roomRecordOf(sku, seq, m.Values)
			if err != nil {
				return err
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(msgs) < 1000 {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// roomRecordOf decodes one entry of a room log stream.
func roomRecordOf(sku string, seq int64, v map[string]any) (revguard.RoomRecord, error) {
	str := func(k string) string { s, _ := v[k].(string); return s }
	n := func(k string) int64 { x, _ := strconv.ParseInt(str(k), 10, 64); return x }
	typ, err := strconv.Atoi(str("type"))
	t, ok := parseTime(str("time"))
	until, ok2 := parseTime(str("until"))
	if err != nil || !ok || !ok2 {
		return revguard.RoomRecord{}, fmt.Errorf("redis: room log of %s: bad entry %v", sku, v)
	}
	r := revguard.RoomRecord{Seq: seq, Type: revguard.RoomRecordType(typ), SKU: sku, Time: t,
		CustomerID: str("cust"), Ticket: n("ticket"), Until: until,
		Settings: revguard.RoomSettings{PreQueueSeconds: n("pre"), AdmitPerSecond: n("rate"), AdmissionSeconds: n("window")}}
	if s := str("seed"); s != "" {
		if r.Seed, err = hex.DecodeString(s); err != nil {
			return revguard.RoomRecord{}, fmt.Errorf("redis: room log of %s: seed: %w", sku, err)
		}
	}
	return r, nil
}
