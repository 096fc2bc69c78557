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
	case state == "c" && w.now().Before(until.Add(claimGrace)) || state == "a" && w.now().Before(until):
		p.Status = revguard.PlaceAdmitted
	case state == "a" || state == "c":
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

// roomSeqBits is how many low bits of a room record's Seq hold its stream entry's
// sequence within its millisecond; the high bits hold the millisecond.
const roomSeqBits = 20

// roomSeq returns the Seq of the stream entry id "<ms>-<n>".
func roomSeq(id string) (int64, error) {
	ms, n, ok := strings.Cut(id, "-")
	a, err1 := strconv.ParseInt(ms, 10, 64)
	b, err2 := strconv.ParseInt(n, 10, 64)
	if !ok || err1 != nil || err2 != nil || b >= 1<<roomSeqBits || a >= 1<<(63-roomSeqBits) {
		return 0, fmt.Errorf("redis: room log entry id %q", id)
	}
	return a<<roomSeqBits | b, nil
}

// roomID is the inverse of roomSeq.
func roomID(seq int64) string {
	return strconv.FormatInt(seq>>roomSeqBits, 10) + "-" + strconv.FormatInt(seq&(1<<roomSeqBits-1), 10)
}

// ReadRoomRecords calls fn with every record of the SKU's room log, in order.
func (w *WaitingRoom) ReadRoomRecords(ctx context.Context, sku string, fn func(revguard.RoomRecord) error) error {
	var after int64
	for {
		recs, err := w.ReadRoomRecordsAfter(ctx, sku, after, 1000)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(recs) < 1000 {
			return nil
		}
		after = recs[len(recs)-1].Seq
	}
}

// ReadRoomRecordsAfter returns up to max records of the SKU's room log whose Seq is
// above after, in order. A record's Seq is its stream entry's position, the same on
// every node and every read: the copy into the ledger resumes from it.
func (w *WaitingRoom) ReadRoomRecordsAfter(ctx context.Context, sku string, after int64, max int) ([]revguard.RoomRecord, error) {
	tag, _, _ := w.inv.skuKey(sku)
	start := "-"
	if after > 0 {
		start = "(" + roomID(after)
	}
	msgs, err := w.inv.client.XRangeN(ctx, tag+":rlog:"+sku, start, "+", int64(max)).Result()
	if err != nil {
		return nil, storeErr("read room log", err)
	}
	recs := make([]revguard.RoomRecord, 0, len(msgs))
	for _, m := range msgs {
		seq, err := roomSeq(m.ID)
		if err != nil {
			return nil, err
		}
		rec, err := roomRecordOf(sku, seq, m.Values)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// TrimRoomRecords deletes from the SKU's room log the records up to Seq upTo, once the
// ledger holds them: the stream keeps only what is still to be copied, and a room's
// memory in Redis does not grow with every join of every drop. A copy that runs
// behind (another node's) reads after its own position and finds only later records,
// which is what it lacks.
func (w *WaitingRoom) TrimRoomRecords(ctx context.Context, sku string, upTo int64) error {
	tag, _, _ := w.inv.skuKey(sku)
	err := w.inv.client.XTrimMinID(ctx, tag+":rlog:"+sku, nextID(roomID(upTo))).Err()
	return storeErr("trim room log", err)
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
