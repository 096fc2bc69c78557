package redis

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultRoomTick is how often a WaitingRoom advances the namespace's rooms.
const DefaultRoomTick = 100 * time.Millisecond

// roomSetMaxAge is how long a node trusts its copy of the set of SKUs with a room. A
// reservation of a SKU outside the set asks Redis nothing about rooms: a SKU without a
// room costs its reservations no round trip. A room put on another node is enforced
// here within this time; one put on this node, at once.
const roomSetMaxAge = 100 * time.Millisecond

var _ revguard.WaitingRoom = (*WaitingRoom)(nil)

// WaitingRoom is the distributed revguard.WaitingRoom. A SKU's room lives in the SKU's
// shard (lua/room_lib.lua), so that each change is one Lua script that reads the SKU's
// counts and changes the room atomically, whichever node runs it; the room's audit log
// is a stream beside it. The draw is made by the node that finds it due: it reads the
// pre-queue, shuffles it with revguard.DrawOrder and a fresh seed, and records it with
// a script that refuses it if the pre-queue changed meanwhile.
//
// Every node's timer advances every room of the namespace; the pace is kept by the
// rooms themselves (a bucket refilled by elapsed time), so N nodes never admit N times
// faster. Reading a place is a pipeline of three reads, no script.
type WaitingRoom struct {
	// Tick is how often Open's goroutine advances the rooms; 0 starts none (tests
	// call Advance). NewWaitingRoom sets DefaultRoomTick.
	Tick time.Duration
	// Logger receives the background loop's failures.
	Logger *slog.Logger

	inv *Inventory
	sc  struct {
		join, draw, advance, claim, settle, put, del, find *goredis.Script
	}
	cancel context.CancelFunc
	wg     sync.WaitGroup

	known      atomic.Pointer[roomSet] // the SKUs with a room, as last read
	refreshing atomic.Bool
}

// roomSet is a node's copy of the namespace's set of SKUs with a room.
type roomSet struct {
	skus map[string]bool
	at   time.Time
}

// hasRoom reports whether the SKU may have a room, from the node's copy of the set,
// read again when older than roomSetMaxAge (by one caller; the others use the old
// copy meanwhile).
func (w *WaitingRoom) hasRoom(ctx context.Context, sku string) (bool, error) {
	set := w.known.Load()
	if set == nil || time.Since(set.at) > roomSetMaxAge {
		if set == nil || w.refreshing.CompareAndSwap(false, true) {
			fresh, err := w.readRoomSet(ctx)
			if set != nil {
				w.refreshing.Store(false)
			}
			if err != nil {
				return false, err
			}
			set = fresh
		}
	}
	return set.skus[sku], nil
}

func (w *WaitingRoom) readRoomSet(ctx context.Context) (*roomSet, error) {
	at := time.Now()
	skus, err := w.inv.client.SMembers(ctx, w.roomsKey()).Result()
	if err != nil {
		return nil, storeErr("list rooms", err)
	}
	set := &roomSet{skus: make(map[string]bool, len(skus)), at: at}
	for _, sku := range skus {
		set.skus[sku] = true
	}
	w.known.Store(set)
	return set, nil
}

// NewWaitingRoom returns the waiting rooms of inv's namespace and shards, on its client
// and clock. Open inv first, then the room.
func NewWaitingRoom(inv *Inventory) *WaitingRoom {
	w := &WaitingRoom{inv: inv, Tick: DefaultRoomTick, Logger: slog.New(slog.DiscardHandler)}
	lib := mustRead("lib.lua") + "\n" + mustRead("room_lib.lua") + "\n"
	s := func(name string) *goredis.Script { return goredis.NewScript(lib + mustRead(name)) }
	w.sc.join, w.sc.draw, w.sc.advance = s("room_join.lua"), s("room_draw.lua"), s("room_advance.lua")
	w.sc.claim, w.sc.settle = s("room_claim.lua"), s("room_settle.lua")
	w.sc.put, w.sc.del, w.sc.find = s("room_put.lua"), s("room_delete.lua"), s("room_find.lua")
	return w
}

// Open starts the advancing goroutine when Tick is set; Close stops it.
func (w *WaitingRoom) Open(ctx context.Context) error {
	if err := w.inv.readable(ctx); err != nil {
		return err
	}
	if w.Tick > 0 {
		bg, cancel := context.WithCancel(context.Background())
		w.cancel = cancel
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(bg)
		}()
	}
	return nil
}

// Close stops the advancing goroutine.
func (w *WaitingRoom) Close() error {
	if w.cancel != nil {
		w.cancel()
		w.wg.Wait()
		w.cancel = nil
	}
	return nil
}

// roomsKey is the set of the namespace's SKUs that have a room (the timer's list).
func (w *WaitingRoom) roomsKey() string { return w.inv.Namespace + ":rooms" }

func (w *WaitingRoom) run(ctx context.Context) {
	t := time.NewTicker(w.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		skus, err := w.inv.client.SMembers(ctx, w.roomsKey()).Result()
		if err != nil {
			if ctx.Err() == nil {
				w.Logger.Warn("waiting room: list rooms", "err", err)
			}
			continue
		}
		for _, sku := range skus {
			err := w.Advance(ctx, sku)
			if err != nil && ctx.Err() == nil && revguard.ErrorCode(err) != revguard.CodeWaitingRoomNotFound {
				w.Logger.Warn("waiting room: advance failed", "sku", sku, "err", err)
			}
		}
	}
}

// call runs a room script on the SKU's shard.
func (w *WaitingRoom) call(ctx context.Context, op string, s *goredis.Script, sku string, args ...any) ([]string, error) {
	if err := w.inv.writable(ctx); err != nil {
		return nil, err
	}
	tag, shard, key := w.inv.skuKey(sku)
	return w.inv.run(ctx, op, s, key, append([]any{tag, shard, w.inv.now(), sku}, args...)...)
}

func (w *WaitingRoom) now() time.Time {
	if w.inv.Now != nil {
		return w.inv.Now()
	}
	return time.Now()
}

func errNoRoom(sku string) error {
	return revguard.Errorf(revguard.CodeWaitingRoomNotFound, "SKU %s has no waiting room", sku)
}

// PutRoom implements revguard.WaitingRoom.
func (w *WaitingRoom) PutRoom(ctx context.Context, sku string, s revguard.RoomSettings) (revguard.Room, bool, error) {
	if err := s.Validate(); err != nil {
		return revguard.Room{}, false, err
	}
	r, err := w.call(ctx, "put room", w.sc.put, sku, s.PreQueueSeconds, s.AdmitPerSecond, s.AdmissionSeconds)
	if err != nil {
		return revguard.Room{}, false, err
	}
	if r[0] == string(revguard.CodeSKUNotFound) {
		return revguard.Room{}, false, revguard.Errorf(revguard.CodeSKUNotFound, "no such SKU")
	}
	if err := w.inv.client.SAdd(ctx, w.roomsKey(), sku).Err(); err != nil {
		return revguard.Room{}, false, storeErr("put room", err)
	}
	if _, err := w.readRoomSet(ctx); err != nil { // this node enforces the room at once
		return revguard.Room{}, false, err
	}
	room, err := w.FindRoom(ctx, sku)
	return room, r[0] == "created", err
}

// DeleteRoom implements revguard.WaitingRoom.
func (w *WaitingRoom) DeleteRoom(ctx context.Context, sku string) error {
	r, err := w.call(ctx, "delete room", w.sc.del, sku)
	if err != nil {
		return err
	}
	if r[0] != "ok" {
		return errNoRoom(sku)
	}
	return nil
}

// FindRoom implements revguard.WaitingRoom.
func (w *WaitingRoom) FindRoom(ctx context.Context, sku string) (revguard.Room, error) {
	r, err := w.call(ctx, "find room", w.sc.find, sku)
	if err != nil {
		return revguard.Room{}, err
	}
	if r[0] != "ok" {
		return revguard.Room{}, errNoRoom(sku)
	}
	if len(r) != 15 {
		return revguard.Room{}, fmt.Errorf("redis: find room %s: bad reply %q", sku, r)
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(r[i], 10, 64); return v }
	room := revguard.Room{SKU: sku, Enabled: true,
		RoomSettings: revguard.RoomSettings{PreQueueSeconds: n(1), AdmitPerSecond: n(2), AdmissionSeconds: n(3)},
		PreQueue:     n(13), Waiting: n(9) - n(8), Admitted: n(14), Used: n(11), Joined: n(12), SoldOut: r[10] == "1"}
	if r[4] == "1" {
		seed, err := hex.DecodeString(r[5])
		if err != nil {
			return revguard.Room{}, fmt.Errorf("redis: find room %s: seed: %w", sku, err)
		}
		room.Seed, room.DrawSize = seed, n(7)
		room.DrawnAt, _ = parseTime(r[6])
	}
	return room, nil
}

// Join implements revguard.WaitingRoom.
func (w *WaitingRoom) Join(ctx context.Context, sku, customerID string) (revguard.Place, bool, error) {
	for range 8 {
		r, err := w.call(ctx, "join room", w.sc.join, sku, customerID)
		if err != nil {
			return revguard.Place{}, false, err
		}
		switch r[0] {
		case "joined", "exists":
			p, err := w.placeOf(sku, customerID, r[1:])
			return p, r[0] == "joined", err
		case "draw_needed":
			if err := w.draw(ctx, sku); err != nil {
				return revguard.Place{}, false, err
			}
			continue
		case "sale_not_open":
			t, _ := parseTime(r[1])
			return revguard.Place{}, false, revguard.Errorf(revguard.CodeSaleNotOpen, "the waiting room opens at %s", t.Format(time.RFC3339))
		case "sold_out":
			return revguard.Place{}, false, revguard.Errorf(revguard.CodeSoldOut, "sold out: the waiting room is closed")
		default:
			return revguard.Place{}, false, errNoRoom(sku)
		}
	}
	return revguard.Place{}, false, revguard.Errorf(revguard.CodeUnavailable, "the draw of SKU %s did not settle", sku)
}

// draw makes the SKU's draw: reads the pre-queue, shuffles it with a fresh seed and
// records the order, unless another node drew first. A pre-queue that changed between
// the read and the record (a join from a node whose clock is behind) is read again.
func (w *WaitingRoom) draw(ctx context.Context, sku string) error {
	tag, _, _ := w.inv.skuKey(sku)
	for range 8 {
		pre, err := w.inv.client.LRange(ctx, tag+":rpre:"+sku, 0, -1).Result()
		if err != nil {
			return storeErr("read pre-queue", err)
		}
		seed := revguard.NewDrawSeed()
		order := revguard.DrawOrder(seed, pre)
		args := make([]any, 0, 2+len(order))
		args = append(args, hex.EncodeToString(seed), len(order))
		for _, c := range order {
			args = append(args, c)
		}
		r, err := w.call(ctx, "draw", w.sc.draw, sku, args...)
		if err != nil {
			return err
		}
		switch r[0] {
		case "ok", "not_due":
			return nil
		case "retry":
			continue
		default:
			return errNoRoom(sku)
		}
	}
	return revguard.Errorf(revguard.CodeUnavailable, "the pre-queue of SKU %s kept changing during the draw", sku)
}

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

// Claim implements revguard.WaitingRoom. A SKU that the node's copy of the room set
// does not hold costs no round trip.
func (w *WaitingRoom) Claim(ctx context.Context, sku, customerID string) (bool, error) {
	if ok, err := w.hasRoom(ctx, sku); err != nil || !ok {
		return false, err
	}
	r, err := w.call(ctx, "claim admission", w.sc.claim, sku, customerID)
	if err != nil {
		return false, err
	}
	switch r[0] {
	case "ok":
		return true, nil
	case "none":
		return false, nil
	}
	why := "join the waiting room of this SKU and wait for your turn"
	if len(r) > 1 {
		switch r[1] {
		case "waiting":
			why = "your turn in the waiting room has not come yet"
		case "used":
			why = "your admission was already used for a reservation"
		case "claimed":
			why = "a reservation with your admission is under way"
		case "lapsed":
			t, _ := parseTime(r[len(r)-1])
			why = "your admission lapsed at " + t.Format(time.RFC3339)
		}
	}
	return false, revguard.Errorf(revguard.CodeAdmissionRequired, "%s", why)
}

// Settle implements revguard.WaitingRoom.
func (w *WaitingRoom) Settle(ctx context.Context, sku, customerID string, used bool) error {
	flag := "0"
	if used {
		flag = "1"
	}
	_, err := w.call(ctx, "settle admission", w.sc.settle, sku, customerID, flag)
	return err
}

// Advance implements revguard.WaitingRoom.
func (w *WaitingRoom) Advance(ctx context.Context, sku string) error {
	for range 8 {
		r, err := w.call(ctx, "advance room", w.sc.advance, sku)
		if err != nil {
			return err
		}
		switch r[0] {
		case "ok":
			return nil
		case "draw_needed":
			if err := w.draw(ctx, sku); err != nil {
				return err
			}
		default:
			return errNoRoom(sku)
		}
	}
	return revguard.Errorf(revguard.CodeUnavailable, "the draw of SKU %s did not settle", sku)
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
