package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestCrash_WaitingRoom runs a crowd through a waiting room on the real binary as a
// child process, SIGKILLs it at random moments and restarts it on the same data dir:
// every acknowledged join is still a place, every acknowledged reservation's admission
// is still used, and no two places share a position.
func TestCrash_WaitingRoom(t *testing.T) {
	const cycles = 6
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	var mu sync.Mutex
	joined := map[string]string{} // customer → session token, of acknowledged joins
	bought := map[string]bool{}   // customers whose reservation was acknowledged
	n := 0

	for cycle := range cycles + 1 {
		ch, err := startChild(crashServeArgs(dir), true)
		if err != nil {
			t.Fatalf("cycle %d: start: %v\n%s", cycle, err, ch.Log)
		}
		c := newClient(t, ch.URL, 32)
		if cycle == 0 {
			c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/room", testAdminToken, map[string]any{"stock": 100000})
			c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/room/waiting-room", testAdminToken, map[string]any{"admit_per_second": 200})
		}
		// Positions count from the head of the line, which the room's timer moves as it
		// admits: closing the sale stops admission, and the places are read until two
		// readings in a row agree (an advance that read the SKU before the PUT may still
		// admit once), so that the positions checked are one picture.
		if cycle > 0 {
			c.must(t, http.StatusOK, nil, "PUT", "/v1/skus/room", testAdminToken, map[string]any{"stock": 100000, "opens_at": "2099-01-01T00:00:00Z"})
		}
		type view struct {
			Status   string `json:"status"`
			Position *int64 `json:"position"`
		}
		read := func() map[string]view {
			got := map[string]view{}
			for cust, tok := range joined {
				var p view
				c.must(t, http.StatusOK, &p, "GET", "/v1/skus/room/waiting-room/place", tok, nil)
				got[cust] = p
			}
			return got
		}
		places := read()
		for stable, n := false, 0; !stable; n++ {
			if n == 20 {
				t.Fatalf("cycle %d: the places still change after the sale closed (20 readings)", cycle)
			}
			next := read()
			stable = maps.EqualFunc(places, next, func(a, b view) bool {
				return a.Status == b.Status && (a.Position == nil) == (b.Position == nil) && (a.Position == nil || *a.Position == *b.Position)
			})
			places = next
		}
		// Everything acknowledged before the last kill is there.
		positions := map[int64]string{}
		for cust, p := range places {
			if bought[cust] && p.Status != "used" {
				t.Fatalf("cycle %d: %s reserved (acknowledged) but its place is %s", cycle, cust, p.Status)
			}
			if p.Position != nil {
				if other, dup := positions[*p.Position]; dup {
					t.Fatalf("cycle %d: %s and %s share position %d", cycle, cust, other, *p.Position)
				}
				positions[*p.Position] = cust
			}
		}
		if cycle == cycles {
			ch.kill()
			break
		}
		if cycle > 0 {
			c.must(t, http.StatusOK, nil, "PUT", "/v1/skus/room", testAdminToken, map[string]any{"stock": 100000})
		}
		ctx, stop := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for range 16 {
			mu.Lock()
			n++
			base := n * 1000
			mu.Unlock()
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					cust := fmt.Sprintf("room-%d", base+i)
					r, err := c.do(ctx, "POST", "/v1/sessions", testAdminToken, map[string]any{"customer_id": cust})
					if err != nil || r.Status != http.StatusCreated {
						return
					}
					var s struct {
						Token string `json:"token"`
					}
					json.Unmarshal(r.Body, &s)
					if r, err = c.do(ctx, "POST", "/v1/skus/room/waiting-room/place", s.Token, nil); err != nil || r.Status != http.StatusCreated {
						return
					}
					mu.Lock()
					joined[cust] = s.Token
					mu.Unlock()
					for ctx.Err() == nil {
						r, err := c.do(ctx, "POST", "/v1/skus/room/reservations", s.Token, nil)
						if err != nil {
							return
						}
						if r.Status == http.StatusCreated {
							mu.Lock()
							bought[cust] = true
							mu.Unlock()
							break
						}
						time.Sleep(5 * time.Millisecond) // not admitted yet
					}
				}
			})
		}
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		ch.kill()
		stop()
		wg.Wait()
	}
	t.Logf("%d acknowledged joins, %d acknowledged reservations over %d kills", len(joined), len(bought), cycles)
	if len(joined) == 0 || len(bought) == 0 {
		t.Fatal("the load did not run")
	}
}
