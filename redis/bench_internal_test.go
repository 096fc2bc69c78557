package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// benchParallelism is the callers per GOMAXPROCS of both reserve benchmarks: a crowd
// waits on Redis's round trips, not on the CPU.
const benchParallelism = 16

// benchInventory opens an Inventory on the shared test server in a namespace of its
// own, with one SKU whose stock and limit never run out, and deletes the namespace at
// the end.
func benchInventory(b *testing.B) (*Inventory, string) {
	url := os.Getenv("REVGUARD_TEST_REDIS_URL")
	if url == "" {
		b.Skip("REVGUARD_TEST_REDIS_URL is unset")
	}
	c, err := Dial(b.Context(), url)
	if err != nil {
		b.Fatal(err)
	}
	var r [6]byte
	rand.Read(r[:])
	inv := NewInventory(c)
	inv.Namespace = "rgb" + hex.EncodeToString(r[:])
	if err := inv.Open(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		inv.Close()
		DeleteNamespace(context.Background(), c, inv.Namespace)
		c.Close()
	})
	const sku = "bench"
	if _, _, err := inv.PutSKU(b.Context(), sku, revguard.SKUUpdate{Stock: revguard.MaxStock,
		PerCustomerLimit: revguard.MaxPerCustomerLimit, HoldSeconds: 3600}); err != nil {
		b.Fatal(err)
	}
	return inv, sku
}

// BenchmarkReserve reserves one unit of one SKU through the Inventory, from
// benchParallelism callers per CPU: the hot path of a flash sale on Redis.
func BenchmarkReserve(b *testing.B) {
	inv, sku := benchInventory(b)
	var next atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		customer := fmt.Sprintf("c%d", next.Add(1))
		for pb.Next() {
			if _, _, err := inv.Reserve(b.Context(), revguard.ReserveRequest{SKU: sku, CustomerID: customer, Quantity: 1}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReserveScript runs the same reserve script with go-redis directly, at the
// same concurrency, with the same keys and arguments: the ceiling that
// BenchmarkReserve is measured against (the goal is at least 0.7 of it).
func BenchmarkReserveScript(b *testing.B) {
	inv, sku := benchInventory(b)
	var next atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		customer := fmt.Sprintf("c%d", next.Add(1))
		for pb.Next() {
			if err := inv.BareReserve(b.Context(), sku, customer); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReserveRatio interleaves rounds of the two benchmarks above, so that both
// see the same load on a shared machine, and reports the Inventory's throughput as a
// fraction of the bare script's ("inventory/script"). Each op is one reserve of
// each kind.
func BenchmarkReserveRatio(b *testing.B) {
	inv, sku := benchInventory(b)
	callers := benchParallelism * runtime.GOMAXPROCS(0)
	ctx := b.Context()
	round := func(n int, op func(customer string) error) time.Duration {
		var wg sync.WaitGroup
		var left atomic.Int64
		left.Store(int64(n))
		start := time.Now()
		for g := range callers {
			customer := fmt.Sprintf("r%d", g)
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					if err := op(customer); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	viaInventory := func(customer string) error {
		_, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: sku, CustomerID: customer, Quantity: 1})
		return err
	}
	viaScript := func(customer string) error {
		return inv.BareReserve(ctx, sku, customer)
	}
	var tInv, tScript time.Duration
	const chunk = 500
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		n := min(chunk, b.N-done)
		tInv += round(n, viaInventory)
		tScript += round(n, viaScript)
	}
	b.ReportMetric(tScript.Seconds()/tInv.Seconds(), "inventory/script")
	b.ReportMetric(float64(b.N)/tInv.Seconds(), "inventory-reserves/s")
	b.ReportMetric(float64(b.N)/tScript.Seconds(), "script-reserves/s")
}
