package revguardtest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/revenueguard/revguard"
)

func testRoomPut(f *roomFixture) {
	f.put("s", 5, 1, 600)
	s := revguard.RoomSettings{PreQueueSeconds: 60, AdmitPerSecond: 10, AdmissionSeconds: 120}
	r, created, err := f.room.PutRoom(f.ctx, "s", s)
	if err != nil || !created {
		f.t.Fatalf("PutRoom = created %v, %v; want created", created, err)
	}
	if r.SKU != "s" || r.RoomSettings != s || !r.Enabled {
		f.t.Fatalf("PutRoom = %+v, want settings %+v, enabled", r, s)
	}
	s.AdmitPerSecond = 20
	if r, created, err = f.room.PutRoom(f.ctx, "s", s); err != nil || created || r.AdmitPerSecond != 20 {
		f.t.Fatalf("PutRoom again = %+v, created %v, %v; want updated", r, created, err)
	}
	if got := f.findRoom("s"); got.RoomSettings != s {
		f.t.Fatalf("FindRoom = %+v, want %+v", got.RoomSettings, s)
	}
}

func testRoomPutSKUNotFound(f *roomFixture) {
	_, _, err := f.room.PutRoom(f.ctx, "nope", revguard.RoomSettings{AdmitPerSecond: 1})
	f.wantCode("PutRoom(unknown SKU)", err, revguard.CodeSKUNotFound)
	_, err = f.room.FindRoom(f.ctx, "nope")
	f.wantCode("FindRoom(unknown SKU)", err, revguard.CodeWaitingRoomNotFound)
}

func testRoomPutInvalid(f *roomFixture) {
	f.put("s", 5, 1, 600)
	_, _, err := f.room.PutRoom(f.ctx, "s", revguard.RoomSettings{AdmitPerSecond: 0})
	f.wantCode("PutRoom(admit 0)", err, revguard.CodeInvalidRequest)
	_, err = f.room.FindRoom(f.ctx, "s")
	f.wantCode("FindRoom after a refused put", err, revguard.CodeWaitingRoomNotFound)
}

func testRoomDelete(f *roomFixture) {
	f.opensIn("s", 5, 0, 10)
	f.join("s", "a")
	if err := f.room.DeleteRoom(f.ctx, "s"); err != nil {
		f.t.Fatalf("DeleteRoom: %v", err)
	}
	f.wantCode("DeleteRoom again", f.room.DeleteRoom(f.ctx, "s"), revguard.CodeWaitingRoomNotFound)
	_, _, err := f.room.Join(f.ctx, "s", "b")
	f.wantCode("Join after DeleteRoom", err, revguard.CodeWaitingRoomNotFound)
	if ok, err := f.room.Claim(f.ctx, "s", "b"); ok || err != nil {
		f.t.Fatalf("Claim with the room off = %v, %v; want no room", ok, err)
	}
	if _, created, err := f.room.PutRoom(f.ctx, "s", revguard.RoomSettings{AdmitPerSecond: 10}); err != nil || created {
		f.t.Fatalf("PutRoom after DeleteRoom = created %v, %v; want the room back", created, err)
	}
	if p, joined, err := f.room.Join(f.ctx, "s", "a"); err != nil || joined || p.CustomerID != "a" {
		f.t.Fatalf("Join of a after the room came back = joined %v, %v; want the same place", joined, err)
	}
}

func testJoinNoRoom(f *roomFixture) {
	f.put("s", 5, 1, 600)
	_, _, err := f.room.Join(f.ctx, "s", "a")
	f.wantCode("Join(SKU without room)", err, revguard.CodeWaitingRoomNotFound)
	_, _, err = f.room.Join(f.ctx, "nope", "a")
	f.wantCode("Join(unknown SKU)", err, revguard.CodeWaitingRoomNotFound)
	_, err = f.room.FindPlace(f.ctx, "s", "a")
	f.wantCode("FindPlace(SKU without room)", err, revguard.CodeWaitingRoomNotFound)
}

func testJoinTooEarly(f *roomFixture) {
	const early = time.Hour + 250*time.Millisecond // a fraction of a second, named in the refusal
	f.opensIn("s", 5, time.Hour+early, 10)         // the pre-queue opens in an hour and a quarter second
	_, _, err := f.room.Join(f.ctx, "s", "a")
	f.wantCode("Join before the pre-queue opens", err, revguard.CodeSaleNotOpen)
	f.wantTimeInDetail("Join before the pre-queue opens", err, f.clock.Now().Add(early))
	_, err = f.room.FindPlace(f.ctx, "s", "a")
	f.wantCode("FindPlace after a refused join", err, revguard.CodePlaceNotFound)
	f.clock.Advance(early)
	f.status("s", f.join("s", "a").CustomerID, revguard.PlacePreQueue)
}

func testJoinSamePlace(f *roomFixture) {
	f.opensIn("s", 5, 0, 1)
	first, joined, err := f.room.Join(f.ctx, "s", "a")
	if err != nil || !joined {
		f.t.Fatalf("first Join = joined %v, %v", joined, err)
	}
	f.join("s", "b")
	f.clock.Advance(time.Second)
	again, joined, err := f.room.Join(f.ctx, "s", "a")
	if err != nil || joined {
		f.t.Fatalf("second Join = joined %v, %v; want the existing place", joined, err)
	}
	if again.Position != first.Position || !again.JoinedAt.Equal(first.JoinedAt) {
		f.t.Fatalf("second Join = position %d joined %v, want %d at %v", again.Position, again.JoinedAt, first.Position, first.JoinedAt)
	}
	if r := f.findRoom("s"); r.Joined != 2 || r.Waiting != 2 {
		f.t.Fatalf("room: %d joined, %d waiting; want 2, 2", r.Joined, r.Waiting)
	}
}

func testJoinConcurrent(f *roomFixture) {
	f.opensIn("s", 5, 0, 1)
	cs := names("c", 100)
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(cs))
	positions := make([][3]int64, len(cs))
	for i, c := range cs {
		for k := range 3 { // each customer joins three times at once
			wg.Go(func() {
				p, _, err := f.room.Join(f.ctx, "s", c)
				if err != nil {
					errs <- err
					return
				}
				positions[i][k] = p.Position
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		f.t.Fatalf("concurrent Join: %v", err)
	}
	for i, ps := range positions {
		if ps[0] != ps[1] || ps[1] != ps[2] {
			f.t.Fatalf("three joins of %s at once got positions %v, want one place", cs[i], ps)
		}
	}
	seen := map[int64]bool{}
	for _, c := range cs {
		p := f.place("s", c)
		if p.Status == revguard.PlaceWaiting {
			if p.Position < 1 || seen[p.Position] {
				f.t.Fatalf("place of %s: position %d repeated or invalid", c, p.Position)
			}
			seen[p.Position] = true
		}
	}
	if r := f.findRoom("s"); r.Joined != int64(len(cs)) {
		f.t.Fatalf("room: %d joined, want %d", r.Joined, len(cs))
	}
}

func testFindPlaceNotFound(f *roomFixture) {
	f.opensIn("s", 5, 0, 1)
	f.join("s", "a")
	_, err := f.room.FindPlace(f.ctx, "s", "b")
	f.wantCode("FindPlace(not joined)", err, revguard.CodePlaceNotFound)
}

func testPreQueueNoPosition(f *roomFixture) {
	f.opensIn("s", 5, 30*time.Minute, 10)
	for _, c := range names("c", 5) {
		p := f.join("s", c)
		if p.Status != revguard.PlacePreQueue || p.Position != 0 {
			f.t.Fatalf("pre-queue place of %s: %s at %d, want pre_queue without position", c, p.Status, p.Position)
		}
	}
	f.advance("s") // before opens_at: no draw, no admission
	if r := f.findRoom("s"); r.PreQueue != 5 || r.Seed != nil || r.Admitted != 0 {
		f.t.Fatalf("room before opens_at = %+v, want 5 in the pre-queue, no draw", r)
	}
	_, err := f.room.Claim(f.ctx, "s", "c-000")
	f.wantCode("Claim in the pre-queue", err, revguard.CodeAdmissionRequired)
}

// drawn joins cs to a room opening in ten minutes with a pace of one per second and
// stock enough, then moves past opens_at and advances: the draw.
func (f *roomFixture) drawn(cs []string) revguard.Room {
	f.t.Helper()
	f.opensIn("s", 1000, 10*time.Minute, 1)
	for _, c := range cs {
		f.join("s", c)
		f.clock.Advance(time.Millisecond)
	}
	f.clock.Set(ClockStart.Add(10 * time.Minute))
	f.advance("s")
	r := f.findRoom("s")
	if len(r.Seed) != revguard.DrawSeedLen || r.DrawSize != int64(len(cs)) || r.DrawnAt.IsZero() {
		f.t.Fatalf("room after opens_at: seed %x, draw of %d at %v; want a %d-byte seed, a draw of %d",
			r.Seed, r.DrawSize, r.DrawnAt, revguard.DrawSeedLen, len(cs))
	}
	return r
}

// lineOf returns the customers in the order of their places: the admitted first, then
// the waiting by position.
func (f *roomFixture) lineOf(cs []string) []string {
	f.t.Helper()
	type pc struct {
		c string
		p revguard.Place
	}
	var ps []pc
	for _, c := range cs {
		ps = append(ps, pc{c, f.place("s", c)})
	}
	rank := func(x pc) int64 {
		if x.p.Status == revguard.PlaceAdmitted {
			return 0
		}
		return x.p.Position
	}
	slices.SortStableFunc(ps, func(a, b pc) int { return int(rank(a) - rank(b)) })
	var out []string
	for _, x := range ps {
		out = append(out, x.c)
	}
	return out
}

func testDrawShuffled(f *roomFixture) {
	cs := names("c", 40)
	r := f.drawn(cs)
	want := revguard.DrawOrder(r.Seed, cs)
	if slices.Equal(want, cs) {
		f.t.Fatal("the draw left 40 customers in join order")
	}
	// One admitted (the pace is one a second): the first of the draw.
	if got := f.admittedOf("s", cs); !slices.Equal(got, want[:1]) {
		f.t.Fatalf("admitted %v, want the draw's first %v", got, want[:1])
	}
	for i, c := range want[1:] {
		p := f.status("s", c, revguard.PlaceWaiting)
		if p.Position != int64(i+1) {
			f.t.Fatalf("place of %s: position %d, want %d (DrawOrder of the recorded seed)", c, p.Position, i+1)
		}
		if p.EstimatedWait != time.Duration(p.Position)*time.Second {
			f.t.Fatalf("place of %s at %d: wait %v, want %v at one a second", c, p.Position, p.EstimatedWait, time.Duration(p.Position)*time.Second)
		}
	}
}

func testDrawOnce(f *roomFixture) {
	cs := names("c", 20)
	r := f.drawn(cs)
	before := f.lineOf(cs)
	f.advance("s")
	f.clock.Advance(time.Millisecond)
	f.advance("s")
	if got := f.findRoom("s"); string(got.Seed) != string(r.Seed) || !got.DrawnAt.Equal(r.DrawnAt) {
		f.t.Fatalf("a second advance drew again: seed %x, want %x", got.Seed, r.Seed)
	}
	if after := f.lineOf(cs); !slices.Equal(before, after) {
		f.t.Fatalf("line changed: %v, then %v", before, after)
	}
}

func testDrawFIFOAfter(f *roomFixture) {
	cs := names("c", 10)
	r := f.drawn(cs)
	late := names("late", 5)
	for i, c := range late {
		p := f.join("s", c)
		if p.Status != revguard.PlaceWaiting || p.Position != int64(len(cs)-1+i+1) {
			f.t.Fatalf("late joiner %s: %s at %d, want waiting at %d", c, p.Status, p.Position, len(cs)+i)
		}
	}
	// A late joiner after the opening with nobody in the pre-queue, on another SKU:
	// first come, first served, no draw.
	_, _, err := f.inv.PutSKU(f.ctx, "t", revguard.SKUUpdate{Stock: 10, PerCustomerLimit: 1, HoldSeconds: 600})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, _, err := f.room.PutRoom(f.ctx, "t", revguard.RoomSettings{AdmitPerSecond: 1}); err != nil {
		f.t.Fatal(err)
	}
	for i, c := range []string{"x", "y", "z"} {
		p, _, err := f.room.Join(f.ctx, "t", c)
		if err != nil || p.Status != revguard.PlaceWaiting || p.Position != int64(i+1) {
			f.t.Fatalf("Join(t, %s) = %s at %d, %v; want waiting at %d", c, p.Status, p.Position, err, i+1)
		}
	}
	// The line is the draw then the late joiners in order.
	want := append(revguard.DrawOrder(r.Seed, cs), late...)
	if got := f.lineOf(append(slices.Clone(cs), late...)); !slices.Equal(got, want) {
		f.t.Fatalf("line %v, want %v", got, want)
	}
}

func testAdmissionPaced(f *roomFixture) {
	f.opensIn("s", 100, 0, 2)
	cs := names("c", 10)
	for _, c := range cs {
		f.join("s", c)
	}
	for step, want := range []int{2, 2, 4, 6} {
		f.advance("s")
		f.advance("s") // a second call at the same instant admits nobody more
		if got := f.admittedOf("s", cs); len(got) != want || !slices.Equal(got, cs[:want]) {
			f.t.Fatalf("step %d: admitted %v, want the first %d", step, got, want)
		}
		if step > 0 {
			f.clock.Advance(time.Second)
		} else {
			f.clock.Advance(time.Second / 4) // a quarter second: half a customer
		}
	}
	p := f.status("s", cs[0], revguard.PlaceAdmitted)
	if want := p.AdmittedAt.Add(600 * time.Second); !p.AdmittedUntil.Equal(want) {
		f.t.Fatalf("admitted until %v, want %v (the SKU's hold time)", p.AdmittedUntil, want)
	}
}

func testAdmissionWithinStock(f *roomFixture) {
	f.opensIn("s", 3, 0, 100)
	cs := names("c", 10)
	for _, c := range cs {
		f.join("s", c)
	}
	f.advance("s")
	if got := f.admittedOf("s", cs); !slices.Equal(got, cs[:3]) {
		f.t.Fatalf("admitted %v, want the first 3 (the stock)", got)
	}
	f.buy("s", cs[0]) // 2 available, 2 admitted: nobody more
	f.clock.Advance(time.Second)
	f.advance("s")
	if got := f.admittedOf("s", cs); len(got) != 2 {
		f.t.Fatalf("admitted %v after one bought, want 2", got)
	}
	if r := f.findRoom("s"); r.Admitted != 2 || r.Used != 1 || r.Waiting != 7 {
		f.t.Fatalf("room = %d admitted, %d used, %d waiting; want 2, 1, 7", r.Admitted, r.Used, r.Waiting)
	}
	if p := f.status("s", cs[3], revguard.PlaceWaiting); p.Position != 1 {
		f.t.Fatalf("next in line at %d, want 1", p.Position)
	}
}

func testAdmissionLapses(f *roomFixture) {
	f.put("s", 1, 1, 600)
	if _, _, err := f.room.PutRoom(f.ctx, "s", revguard.RoomSettings{AdmitPerSecond: 10, AdmissionSeconds: 60}); err != nil {
		f.t.Fatal(err)
	}
	f.join("s", "a")
	f.join("s", "b")
	f.advance("s")
	p := f.status("s", "a", revguard.PlaceAdmitted)
	if !p.AdmittedUntil.Equal(p.AdmittedAt.Add(time.Minute)) {
		f.t.Fatalf("admitted until %v, want a minute after %v", p.AdmittedUntil, p.AdmittedAt)
	}
	f.status("s", "b", revguard.PlaceWaiting)
	f.clock.Advance(time.Minute)
	_, err := f.room.Claim(f.ctx, "s", "a")
	f.wantCode("Claim of a lapsed admission", err, revguard.CodeAdmissionRequired)
	f.advance("s")
	f.status("s", "a", revguard.PlaceExpired)
	f.status("s", "b", revguard.PlaceAdmitted) // the unit is free again for the next
}

func testSoldOutCloses(f *roomFixture) {
	f.opensIn("s", 1, 0, 10)
	cs := names("c", 4)
	for _, c := range cs {
		f.join("s", c)
	}
	f.advance("s")
	res := f.buy("s", cs[0])
	f.confirm(res, "")
	f.advance("s")
	for _, c := range cs[1:] {
		f.status("s", c, revguard.PlaceSoldOut)
	}
	f.status("s", cs[0], revguard.PlaceUsed)
	if r := f.findRoom("s"); !r.SoldOut {
		f.t.Fatalf("room = %+v, want sold out", r)
	}
	_, _, err := f.room.Join(f.ctx, "s", "late")
	f.wantCode("Join of a closed room", err, revguard.CodeSoldOut)
	f.put("s", 2, 1, 600) // a restock of one unit: the room reopens
	f.advance("s")
	f.status("s", cs[1], revguard.PlaceAdmitted)
	f.status("s", cs[2], revguard.PlaceWaiting)
	if r := f.findRoom("s"); r.SoldOut {
		f.t.Fatal("room still sold out after a restock")
	}
	f.join("s", "late")
}

// testSoldOutJoinAtOnce checks that a join is refused as soon as the SKU has nothing
// available and nothing held, before an advance brings the room's sold_out up to
// date, and taken again as soon as units come back: a customer does not queue (and
// spend a bot check) for a sale that is over.
func testSoldOutJoinAtOnce(f *roomFixture) {
	f.opensIn("s", 1, 0, 10)
	f.join("s", "a")
	f.advance("s")
	f.confirm(f.buy("s", "a"), "")
	_, _, err := f.room.Join(f.ctx, "s", "late")
	f.wantCode("Join right after the last unit was sold", err, revguard.CodeSoldOut)
	if r := f.findRoom("s"); r.Joined != 1 {
		f.t.Fatalf("room = %+v after a refused join, want 1 place", r)
	}
	f.advance("s") // the room closes
	if r := f.findRoom("s"); !r.SoldOut {
		f.t.Fatalf("room = %+v after an advance of a sold-out SKU, want sold out", r)
	}
	f.put("s", 2, 1, 600) // a restock, and no advance
	if p := f.join("s", "late"); p.Status == revguard.PlaceSoldOut {
		f.t.Fatalf("a join taken after a restock: place %+v, sold out", p)
	}
	if r := f.findRoom("s"); r.SoldOut {
		f.t.Fatalf("room = %+v after a join taken after a restock, still sold out", r)
	}

	// A room nobody is in, whose SKU's stock is put to nothing.
	f.opensIn("z", 1, 0, 10)
	f.put("z", 0, 1, 600)
	_, _, err = f.room.Join(f.ctx, "z", "x")
	f.wantCode("Join after the stock was put to 0", err, revguard.CodeSoldOut)
}

func testReopenOnRelease(f *roomFixture) {
	f.opensIn("s", 1, 0, 10)
	f.join("s", "a")
	f.join("s", "b")
	f.advance("s")
	res := f.buy("s", "a")
	f.clock.Advance(time.Second)
	f.advance("s")
	f.status("s", "b", revguard.PlaceWaiting) // the unit is held: b waits, not sold out
	f.release(res)
	f.advance("s")
	f.status("s", "b", revguard.PlaceAdmitted)
}

func testClaimNoRoom(f *roomFixture) {
	f.put("s", 1, 1, 600)
	if ok, err := f.room.Claim(f.ctx, "s", "a"); ok || err != nil {
		f.t.Fatalf("Claim(SKU without room) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := f.room.Claim(f.ctx, "nope", "a"); ok || err != nil {
		f.t.Fatalf("Claim(unknown SKU) = %v, %v; want false, nil", ok, err)
	}
}

func testClaimNotAdmitted(f *roomFixture) {
	f.opensIn("s", 1, 0, 10)
	f.join("s", "a")
	f.join("s", "b")
	f.advance("s")
	_, err := f.room.Claim(f.ctx, "s", "b")
	f.wantCode("Claim while waiting", err, revguard.CodeAdmissionRequired)
	_, err = f.room.Claim(f.ctx, "s", "stranger")
	f.wantCode("Claim without a place", err, revguard.CodeAdmissionRequired)
}

func testClaimSingleUse(f *roomFixture) {
	f.opensIn("s", 5, 0, 10)
	f.join("s", "a")
	f.advance("s")
	f.buy("s", "a")
	_, err := f.room.Claim(f.ctx, "s", "a")
	f.wantCode("Claim of a used admission", err, revguard.CodeAdmissionRequired)
	f.status("s", "a", revguard.PlaceUsed)
	if _, joined, err := f.room.Join(f.ctx, "s", "a"); err != nil || joined {
		f.t.Fatalf("Join after use = joined %v, %v; want the same (used) place", joined, err)
	}
}

func testClaimSettleUnused(f *roomFixture) {
	f.opensIn("s", 5, 0, 10)
	f.join("s", "a")
	f.advance("s")
	if ok, err := f.room.Claim(f.ctx, "s", "a"); !ok || err != nil {
		f.t.Fatalf("Claim = %v, %v", ok, err)
	}
	_, err := f.room.Claim(f.ctx, "s", "a")
	f.wantCode("Claim while claimed", err, revguard.CodeAdmissionRequired)
	if err := f.room.Settle(f.ctx, "s", "a", false); err != nil {
		f.t.Fatal(err)
	}
	f.status("s", "a", revguard.PlaceAdmitted)
	f.buy("s", "a")
}

func testClaimConcurrent(f *roomFixture) {
	f.opensIn("s", 5, 0, 10)
	f.join("s", "a")
	f.advance("s")
	var wg sync.WaitGroup
	var mu sync.Mutex
	claims := 0
	for range 50 {
		wg.Go(func() {
			ok, err := f.room.Claim(context.WithoutCancel(f.ctx), "s", "a")
			if err == nil && ok {
				mu.Lock()
				claims++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if claims != 1 {
		f.t.Fatalf("%d concurrent claims of one admission succeeded, want 1", claims)
	}
}

// testDrawConcurrent races the draw against late joins, polls and more advances at
// opens_at: every customer ends up in line once, the pre-queue in the draw's order,
// and the late joiners behind it.
func testDrawConcurrent(f *roomFixture) {
	cs := names("c", 100)
	f.opensIn("s", 1000, 10*time.Minute, 1)
	for _, c := range cs {
		f.join("s", c)
	}
	f.clock.Set(ClockStart.Add(10 * time.Minute))
	late := names("late", 50)
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(late))
	for i, c := range late {
		wg.Go(func() {
			if _, _, err := f.room.Join(f.ctx, "s", c); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			if _, err := f.room.FindPlace(f.ctx, "s", cs[i]); err != nil {
				errs <- err
			}
		})
		if i%10 == 0 {
			wg.Go(func() {
				if err := f.room.Advance(f.ctx, "s"); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		f.t.Fatalf("during the draw: %v", err)
	}
	r := f.findRoom("s")
	if r.DrawSize != int64(len(cs)) || r.Joined != int64(len(cs)+len(late)) {
		f.t.Fatalf("room %+v: want a draw of %d and %d joined", r, len(cs), len(cs)+len(late))
	}
	line := f.lineOf(append(slices.Clone(cs), late...))
	if want := revguard.DrawOrder(r.Seed, cs); !slices.Equal(line[:len(cs)], want) {
		f.t.Fatalf("the line's head %v is not the draw %v", line[:len(cs)], want)
	}
	got := slices.Clone(line[len(cs):])
	slices.Sort(got)
	if !slices.Equal(got, late) {
		f.t.Fatalf("behind the draw: %v, want the late joiners", got)
	}
}
