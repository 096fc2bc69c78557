package redis

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/revguardtest"
)

// TestDraw_Resumed leaves a draw half done, as a node that died mid-draw would: begun,
// one chunk placed. Another node's advance finishes it with the recorded seed, a join
// meanwhile waits for it, and the line is DrawOrder of that seed and the pre-queue.
func TestDraw_Resumed(t *testing.T) {
	url := os.Getenv("REVGUARD_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("REVGUARD_TEST_REQUIRE_ALL") == "1" {
			t.Fatal("REVGUARD_TEST_REDIS_URL is unset and REVGUARD_TEST_REQUIRE_ALL=1")
		}
		t.Skip("REVGUARD_TEST_REDIS_URL is unset")
	}
	ctx := t.Context()
	c, err := Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	clock := revguardtest.NewClock(time.Time{})
	inv := NewInventory(c)
	inv.Namespace, inv.Shards, inv.Now = "rgd"+hex.EncodeToString(revguard.NewDrawSeed()[:6]), 2, clock.Now
	if err := inv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		inv.Close()
		DeleteNamespace(context.Background(), c, inv.Namespace)
	}()
	w := NewWaitingRoom(inv)
	w.Tick = 0
	opens := clock.Now().Add(time.Minute)
	if _, _, err := inv.PutSKU(ctx, "s", revguard.SKUUpdate{Stock: 10, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: opens}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.PutRoom(ctx, "s", revguard.RoomSettings{PreQueueSeconds: 600, AdmitPerSecond: 1}); err != nil {
		t.Fatal(err)
	}
	var pre []string
	for i := range 2*drawChunk + 10 {
		cust := fmt.Sprintf("c-%05d", i)
		pre = append(pre, cust)
		if _, _, err := w.Join(ctx, "s", cust); err != nil {
			t.Fatal(err)
		}
	}
	clock.Set(opens)
	seed := revguard.NewDrawSeed()
	r, err := w.call(ctx, "draw", w.sc.draw, "s", "begin", hex.EncodeToString(seed), len(pre))
	if err != nil || r[0] != "drawing" {
		t.Fatalf("begin: %q, %v", r, err)
	}
	order := revguard.DrawOrder(seed, pre)
	args := []any{"place", 0}
	for _, c := range order[:drawChunk] {
		args = append(args, c)
	}
	if r, err := w.call(ctx, "draw", w.sc.draw, "s", args...); err != nil || r[0] != "progress" {
		t.Fatalf("place: %q, %v", r, err)
	}
	// The node dies here. A join now helps finish the draw, then queues behind it.
	late, _, err := w.Join(ctx, "s", "late")
	if err != nil || late.Status != revguard.PlaceWaiting {
		t.Fatalf("join during the draw: %+v, %v", late, err)
	}
	if err := w.Advance(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	room, err := w.FindRoom(ctx, "s")
	if err != nil || !slices.Equal(room.Seed, seed) || room.DrawSize != int64(len(pre)) {
		t.Fatalf("room %+v, %v: want the draw begun with seed %x", room, err, seed)
	}
	line, err := c.LRange(ctx, w.inv.tags[shardOf("s", 2)]+":rline:s", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(order), "late"); !slices.Equal(line, want) {
		t.Fatalf("line of %d differs from the draw's order of %d and the late joiner", len(line), len(want))
	}
	for i, cust := range []string{order[1], order[drawChunk+5], "late"} {
		p, err := w.FindPlace(ctx, "s", cust)
		want := []int64{1, drawChunk + 5, int64(len(pre))}[i]
		if err != nil || p.Position != want {
			t.Fatalf("place of %s: %+v, %v; want position %d", cust, p, err, want)
		}
	}
}

func TestRoomSeq(t *testing.T) {
	for _, id := range []string{"0-1", "1764985200123-0", "1764985200123-2047", "1764985200123-1048575"} {
		seq, err := roomSeq(id)
		if err != nil || roomID(seq) != id {
			t.Errorf("roomSeq(%q) = %d, %v; roomID = %q", id, seq, err, roomID(seq))
		}
	}
	a, _ := roomSeq("1764985200123-5")
	b, _ := roomSeq("1764985200124-0")
	if a >= b {
		t.Errorf("seqs out of the streams' order: %d >= %d", a, b)
	}
	for _, id := range []string{"", "1", "x-1", "1-1048576", "-1-0"} {
		if _, err := roomSeq(id); err == nil {
			t.Errorf("roomSeq(%q): want an error", id)
		}
	}
}
