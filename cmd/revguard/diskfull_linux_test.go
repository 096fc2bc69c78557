package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestBinary_DiskFull runs the real binary on a small tmpfs that the test then fills,
// and keeps reserving until the journal cannot write. Every answer is a 201 or a 503
// with Retry-After (never a 500); the server then shuts down by itself and exits 1, so
// that a supervisor restarts it; and restarted once there is room again, it has every
// reservation it acknowledged. Mounting needs root (CAP_SYS_ADMIN): the test skips,
// saying so, where it cannot mount.
func TestBinary_DiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("short: fills a file system")
	}
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=128m"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (%v): this test needs root", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(small, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", small, err)
		}
	})
	dir := filepath.Join(small, "data")
	ch, err := startChild(crashServeArgs(dir), true)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, ch.Log)
	}
	defer ch.kill()
	c := newClient(t, ch.URL, 16)
	c.must(t, http.StatusCreated, nil, "PUT", "/v1/skus/bulk", testAdminToken,
		map[string]any{"stock": 100_000_000, "per_customer_limit": 1_000_000, "hold_seconds": 86400})
	// Long ids and idempotency keys make long journal records: the journal's
	// preallocated space, which it writes into after the disk is full, runs out sooner.
	token := c.mustSession(t, strings.Repeat("c", revguard.MaxCustomerIDLen))

	// Fill the file system: the ballast takes every free block.
	ballast := filepath.Join(small, "ballast")
	fillDisk(t, ballast)

	var (
		mu       sync.Mutex
		acked    []string
		refused  int
		problems []string
	)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	pad := strings.Repeat("k", revguard.MaxIdempotencyKeyLen-8)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				key := fmt.Sprintf("%s-%d", pad, next.Add(1))
				r, err := c.do(ctx, "POST", "/v1/skus/bulk/reservations", token, nil, "Idempotency-Key", key)
				if err != nil {
					return // the server is gone: it stopped by itself, or the test ended
				}
				mu.Lock()
				switch {
				case r.Status == http.StatusCreated:
					var res struct{ ID string }
					if json.Unmarshal(r.Body, &res) != nil || res.ID == "" {
						problems = append(problems, "a 201 without an id: "+r.String())
					}
					acked = append(acked, res.ID)
				case r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "":
					refused++
				default:
					problems = append(problems, r.String())
				}
				mu.Unlock()
			}
		})
	}
	code := ch.wait(90 * time.Second)
	cancel()
	wg.Wait()
	if len(problems) > 0 {
		t.Errorf("%d answers neither 201 nor 503 with Retry-After, the first: %s", len(problems), problems[0])
	}
	if code != exitError {
		t.Fatalf("exit code %d while the disk was full, want %d (stopped for a restart)\n%s", code, exitError, ch.Log)
	}
	if !strings.Contains(ch.Log.String(), "journal failed") {
		t.Errorf("the log does not say the journal failed:\n%s", ch.Log)
	}
	t.Logf("%d reservations acknowledged, %d refused with 503 before the server stopped", len(acked), refused)

	// Room again: the restarted server has every acknowledged reservation.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	srv := MustRunServer(t, dir, nil)
	c = newClient(t, srv.URL, 1)
	var sku struct{ Held int64 }
	c.must(t, http.StatusOK, &sku, "GET", "/v1/skus/bulk", testAdminToken, nil)
	if sku.Held < int64(len(acked)) {
		t.Fatalf("after the restart %d units held, fewer than the %d reservations acknowledged", sku.Held, len(acked))
	}
	for i, id := range acked {
		if i%97 != 0 && i != len(acked)-1 { // a sample, and the last acknowledged
			continue
		}
		c.must(t, http.StatusOK, nil, "GET", "/v1/reservations/"+id, token, nil)
	}
	c.must(t, http.StatusCreated, nil, "POST", "/v1/skus/bulk/reservations", token, nil)
}

// fillDisk writes name until the file system has no space left.
func fillDisk(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", name, err)
			}
			return
		}
	}
}
