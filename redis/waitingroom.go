package redis

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/tick"
)

// DefaultRoomTick is how often a WaitingRoom advances the namespace's rooms.
const DefaultRoomTick = 100 * time.Millisecond

// roomSetMaxAge is how long a node trusts its copy of the set of SKUs with a room. A
// reservation of a SKU outside the set asks Redis nothing about rooms: a SKU without a
// room costs its reservations no round trip. A room put on another node is enforced
// here within this time; one put on this node, at once.
const roomSetMaxAge = 100 * time.Millisecond

// roomSetReadTimeout bounds a read of the room set that callers wait for.
const roomSetReadTimeout = 2 * time.Second

// claimGrace is how long past its window a claimed admission stays claimed (room_lib's
// CLAIM_GRACE): a claim that a node never settled (it died) then lapses.
const claimGrace = 60 * time.Second

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

	known atomic.Pointer[roomSet] // the SKUs with a room, as last read
	reads singleflight.Group      // one read of the set at a time, which every caller needing it waits for
}

// roomSet is a node's copy of the namespace's set of SKUs with a room.
type roomSet struct {
	skus map[string]bool
	at   time.Time
}

// hasRoom reports whether the SKU may have a room, from the node's copy of the set.
func (w *WaitingRoom) hasRoom(ctx context.Context, sku string) (bool, error) {
	set, err := w.rooms(ctx)
	if err != nil {
		return false, err
	}
	return set.skus[sku], nil
}

// rooms returns the node's copy of the room set. A copy older than roomSetMaxAge is
// never used: the callers that find it so wait for one read of the set together.
// (Letting all but one use the old copy meanwhile let a burst of reservations through
// a room put since, on a node whose copy nothing had refreshed: refresh keeps the copy
// fresh, and this covers a node without it.)
func (w *WaitingRoom) rooms(ctx context.Context) (*roomSet, error) {
	set := w.known.Load()
	for start := time.Now(); set == nil || start.Sub(set.at) > roomSetMaxAge; {
		// Not the first caller's context: its hang-up must not fail the others. A read
		// joined late may have begun too long before this call: then read again.
		v, err, _ := w.reads.Do("rooms", func() (any, error) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), roomSetReadTimeout)
			defer cancel()
			return w.readRoomSet(rctx)
		})
		if err != nil {
			return nil, err
		}
		set = v.(*roomSet)
	}
	return set, nil
}

// ListRooms returns every room of the namespace, by SKU (for the metrics): the set of
// SKUs with a room, then each room, one round trip each.
func (w *WaitingRoom) ListRooms(ctx context.Context) ([]revguard.Room, error) {
	set, err := w.readRoomSet(ctx)
	if err != nil {
		return nil, err
	}
	skus := slices.Sorted(maps.Keys(set.skus))
	out := make([]revguard.Room, 0, len(skus))
	for _, sku := range skus {
		r, err := w.FindRoom(ctx, sku)
		if revguard.ErrorCode(err) == revguard.CodeWaitingRoomNotFound {
			continue // turned off meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
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
	for { // keep the newest read: the timer's and a caller's may finish in either order
		old := w.known.Load()
		if old != nil && old.at.After(at) || w.known.CompareAndSwap(old, set) {
			return set, nil
		}
	}
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
		w.wg.Go(func() { w.run(bg) })
		w.wg.Go(func() { w.refresh(bg) })
	}
	return nil
}

// refresh reads the node's copy of the room set again twice within its age limit, on
// a goroutine of its own (the advances may take longer than a tick), so that hasRoom
// finds it fresh and a SKU without a room costs its reservations no round trip.
func (w *WaitingRoom) refresh(ctx context.Context) {
	tick.Every(ctx, roomSetMaxAge/2, func() {
		if _, err := w.readRoomSet(ctx); err != nil && ctx.Err() == nil {
			w.Logger.Warn("waiting room: read the room set", "err", err)
		}
	})
}

// Close stops the goroutines that Open started.
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
	tick.Every(ctx, w.Tick, func() {
		set, err := w.rooms(ctx) // the copy that refresh keeps fresh
		if err != nil {
			if ctx.Err() == nil {
				w.Logger.Warn("waiting room: list rooms", "err", err)
			}
			return
		}
		for sku := range set.skus {
			err := w.Advance(ctx, sku)
			if err != nil && ctx.Err() == nil && revguard.ErrorCode(err) != revguard.CodeWaitingRoomNotFound {
				w.Logger.Warn("waiting room: advance failed", "sku", sku, "err", err)
			}
		}
	})
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
			return revguard.Place{}, false, revguard.Errorf(revguard.CodeSaleNotOpen, "the waiting room opens at %s", t.Format(time.RFC3339Nano))
		case "sold_out":
			return revguard.Place{}, false, revguard.Errorf(revguard.CodeSoldOut, "sold out: the waiting room is closed")
		default:
			return revguard.Place{}, false, errNoRoom(sku)
		}
	}
	return revguard.Place{}, false, revguard.Errorf(revguard.CodeUnavailable, "the draw of SKU %s did not settle", sku)
}

// drawChunk is how many customers one step of a draw places: a script of a few
// milliseconds, however large the pre-queue.
const drawChunk = 2000

// draw makes the SKU's draw, or helps finish one under way (lua/room_draw.lua): it
// begins it with a fresh seed (the first node to begin wins, and every node uses the
// recorded seed), reads the frozen pre-queue, computes the order with
// revguard.DrawOrder, and places it a chunk at a time.
func (w *WaitingRoom) draw(ctx context.Context, sku string) error {
	tag, _, _ := w.inv.skuKey(sku)
	for range 8 {
		pre, err := w.inv.client.LRange(ctx, tag+":rpre:"+sku, 0, -1).Result()
		if err != nil {
			return storeErr("read pre-queue", err)
		}
		r, err := w.call(ctx, "draw", w.sc.draw, sku, "begin", hex.EncodeToString(revguard.NewDrawSeed()), len(pre))
		if err != nil {
			return err
		}
		switch {
		case r[0] == "ok" || r[0] == "not_due":
			return nil
		case r[0] == "retry":
			continue
		case r[0] != "drawing" || len(r) != 4:
			return errNoRoom(sku)
		}
		seed, err := hex.DecodeString(r[1])
		size, err2 := strconv.Atoi(r[2])
		placed, err3 := strconv.Atoi(r[3])
		if err := errors.Join(err, err2, err3); err != nil {
			return fmt.Errorf("redis: draw of %s: bad reply %q", sku, r)
		}
		if len(pre) != size {
			// Begun by another node on the pre-queue it read; frozen since: read it again.
			if pre, err = w.inv.client.LRange(ctx, tag+":rpre:"+sku, 0, -1).Result(); err != nil {
				return storeErr("read pre-queue", err)
			}
			if len(pre) != size {
				return fmt.Errorf("redis: draw of %s: the frozen pre-queue has %d customers, the draw %d", sku, len(pre), size)
			}
		}
		order := revguard.DrawOrder(seed, pre)
		for placed < size {
			end := min(placed+drawChunk, size)
			args := make([]any, 0, 2+end-placed)
			args = append(args, "place", placed)
			for _, c := range order[placed:end] {
				args = append(args, c)
			}
			r, err := w.call(ctx, "draw", w.sc.draw, sku, args...)
			if err != nil {
				return err
			}
			if r[0] != "progress" || len(r) != 2 {
				return nil // finished by another node, or the room was turned off
			}
			if placed, err = strconv.Atoi(r[1]); err != nil {
				return fmt.Errorf("redis: draw of %s: bad reply %q", sku, r)
			}
		}
		if _, err := w.call(ctx, "draw", w.sc.draw, sku, "end"); err != nil {
			return err
		}
		return nil
	}
	return revguard.Errorf(revguard.CodeUnavailable, "the pre-queue of SKU %s kept changing during the draw", sku)
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
			why = "your admission lapsed at " + t.Format(time.RFC3339Nano)
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
