package redis_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/revguardtest"
)

// TestCrash_AcknowledgedHoldsSurvive kills a Redis that runs as docs/distributed.md
// says (appendonly yes, appendfsync always, aof-load-truncated no) with SIGKILL while
// goroutines reserve, repairs a torn AOF as the docs say and restarts it on the same
// files, and checks that every reservation it acknowledged is there with its units
// counted, and that the counts keep their invariants. A few cycles.
func TestCrash_AcknowledgedHoldsSurvive(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--appendonly", "yes", "--appendfsync", "always", "--aof-load-truncated", "no")
	c := MustDial(t, srv.URL())
	inv := MustOpenInventory(t, c, "crash", func(inv *redis.Inventory) { inv.Shards = 4 })
	ctx := t.Context()
	skus := []string{"cr-0", "cr-1", "cr-2"}
	for _, id := range skus {
		if _, _, err := inv.PutSKU(ctx, id, revguard.SKUUpdate{Stock: 100_000, PerCustomerLimit: 1000, HoldSeconds: 3600}); err != nil {
			t.Fatal(err)
		}
	}
	var acked []revguard.Reservation
	for cycle := range 3 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		var killed atomic.Bool
		for g := range 8 {
			wg.Go(func() {
				for i := 0; !killed.Load(); i++ {
					r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: skus[(g+i)%len(skus)],
						CustomerID: fmt.Sprintf("c%d-%d", cycle, g), Quantity: 1 + int64(i%2)})
					if err != nil {
						if code := revguard.ErrorCode(err); code != revguard.CodeUnavailable {
							t.Errorf("Reserve while Redis dies: %v (code %s), want unavailable", err, code)
							return
						}
						continue // a connection that the last crash broke, or Redis is gone
					}
					mu.Lock()
					acked = append(acked, r)
					mu.Unlock()
				}
			})
		}
		time.Sleep(300 * time.Millisecond)
		srv.kill()
		killed.Store(true)
		wg.Wait()
		if srv.repairAOF() {
			t.Logf("cycle %d: the kill tore the AOF; redis-check-aof cut the torn transaction", cycle)
		}
		srv.start()

		// Every acknowledged reservation is there, held, with its units counted.
		held := make(map[string]int64)
		for _, want := range acked {
			got, err := inv.FindReservation(ctx, want.ID)
			if err != nil || got.Status != revguard.StatusHeld || got.Quantity != want.Quantity || got.SKU != want.SKU {
				t.Fatalf("cycle %d: acknowledged %+v; after the crash %+v, %v", cycle, want, got, err)
			}
		}
		var all int64
		if err := inv.ForEachReservation(ctx, func(r revguard.Reservation) bool {
			if r.Status == revguard.StatusHeld {
				held[r.SKU] += r.Quantity
				all += r.Quantity
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		var ackedUnits int64
		for _, r := range acked {
			ackedUnits += r.Quantity
		}
		for _, id := range skus {
			s, err := inv.FindSKU(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			revguardtest.CheckSKU(t, s)
			if s.Held != held[id] {
				t.Fatalf("cycle %d: %s counts %d held units, its reservations hold %d", cycle, id, s.Held, held[id])
			}
		}
		// A reserve whose answer the crash cut off may have happened: at least what
		// was acknowledged is held.
		if all < ackedUnits || len(acked) == 0 {
			t.Fatalf("cycle %d: %d units held after the crash, %d acknowledged", cycle, all, ackedUnits)
		}
		t.Logf("cycle %d: %d reservations acknowledged so far, %d units held", cycle, len(acked), all)
	}
}

// TestCrash_TornAOFRepaired tears the AOF inside the MULTI/EXEC of a reserve's script,
// as a kill in the middle of the write can, and restarts Redis the way
// docs/distributed.md says: with aof-load-truncated no it refuses the torn file, and
// redis-check-aof --fix cuts the file before the MULTI. The torn reserve, never
// acknowledged, is gone whole, and a hold acknowledged after the repair survives the
// next restart. Under the default aof-load-truncated yes, Redis 7.0.15 starts on the
// torn file but keeps its incomplete MULTI, and the next restart applies the torn
// reserve's first commands with the following script's transaction: the reservation
// comes back held while its SKU does not count it, and the last check fails.
func TestCrash_TornAOFRepaired(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--appendonly", "yes", "--appendfsync", "always", "--aof-load-truncated", "no")
	inv := MustOpenInventory(t, MustDial(t, srv.URL()), "torn", nil)
	ctx := t.Context()
	if _, _, err := inv.PutSKU(ctx, "t-1", revguard.SKUUpdate{Stock: 100, PerCustomerLimit: 100, HoldSeconds: 3600}); err != nil {
		t.Fatal(err)
	}
	reserve := func(q int64) revguard.Reservation {
		t.Helper()
		r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "t-1", CustomerID: "c", Quantity: q})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	check := func(held int64, there []revguard.Reservation, gone ...revguard.Reservation) {
		t.Helper()
		s, err := inv.FindSKU(ctx, "t-1")
		if err != nil {
			t.Fatal(err)
		}
		revguardtest.CheckSKU(t, s)
		if s.Held != held {
			t.Fatalf("t-1 holds %d units, want %d", s.Held, held)
		}
		for _, r := range there {
			if got, err := inv.FindReservation(ctx, r.ID); err != nil || got.Status != revguard.StatusHeld {
				t.Fatalf("acknowledged %s: %+v, %v", r.ID, got, err)
			}
		}
		for _, r := range gone {
			if got, err := inv.FindReservation(ctx, r.ID); revguard.ErrorCode(err) != revguard.CodeReservationNotFound {
				t.Fatalf("torn %s: %+v, %v; want not found", r.ID, got, err)
			}
		}
	}

	first := reserve(1)
	torn := reserve(2)
	srv.kill()
	tearLastTransaction(t, srv.Dir)
	if err := srv.tryStart(); !errors.Is(err, errExitedAtStart) || !strings.Contains(err.Error(), "Unexpected end of file") {
		t.Fatalf("Redis on a torn AOF with aof-load-truncated no: %v; want it to refuse the file", err)
	}
	if !srv.repairAOF() {
		t.Fatal("redis-check-aof --fix cut nothing from a torn AOF")
	}
	srv.start()
	check(1, []revguard.Reservation{first}, torn)

	after := reserve(3)
	srv.kill()
	if srv.repairAOF() {
		t.Fatal("redis-check-aof --fix cut an AOF that no crash tore")
	}
	srv.start()
	check(4, []revguard.Reservation{first, after}, torn)
}

// tearLastTransaction cuts the incremental AOF in dir in the middle of its last
// MULTI/EXEC, as if Redis died while writing it.
func tearLastTransaction(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "appendonlydir", "*.incr.aof"))
	if err != nil || len(files) != 1 {
		t.Fatalf("incremental AOF files %q, %v; want one", files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	multi := bytes.LastIndex(b, []byte("MULTI\r\n"))
	exec := bytes.LastIndex(b, []byte("EXEC\r\n"))
	if multi < 0 || exec < multi {
		t.Fatalf("no transaction at the end of the AOF:\n%q", b)
	}
	if err := os.Truncate(files[0], int64(multi+exec)/2); err != nil {
		t.Fatal(err)
	}
}
