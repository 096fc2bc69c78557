package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBacklogOf reads the backlog gauges the way waitIdle does: the ledger's and the
// change log's lag summed, and an error, not a silent zero, when a server shows
// neither (a renamed metric would otherwise make every wait end at once).
func TestBacklogOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		metrics string
		want    float64
		wantErr bool
	}{
		{"Both", "# HELP x\nrevguard_ledger_lag_events 120\nrevguard_ledger_lag_seconds 3\nrevguard_changes_lag_events 5\n", 125, false},
		{"Idle", "revguard_ledger_lag_events 0\nrevguard_changes_lag_events 0\n", 0, false},
		{"Exponent", "revguard_ledger_lag_events 1.5e+06\n", 1.5e6, false},
		{"Neither", "revguard_journal_batches_total 7\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/metrics" {
					http.NotFound(w, r)
					return
				}
				w.Write([]byte(tc.metrics))
			}))
			defer srv.Close()
			got, err := backlogOf(context.Background(), srv.URL)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("backlogOf = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestWaitIdle waits until a server's backlog reaches zero: its first three answers
// show a backlog, so it must ask a fourth time.
func TestWaitIdle(t *testing.T) {
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lag := "0"
		if asked.Add(1) <= 3 {
			lag = "42"
		}
		w.Write([]byte(strings.Join([]string{"revguard_ledger_lag_events " + lag, "revguard_changes_lag_events 0", ""}, "\n")))
	}))
	defer srv.Close()
	if err := waitIdle(context.Background(), []string{srv.URL}); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != 4 {
		t.Fatalf("waitIdle asked %d times; want 4 (three answers with a backlog, then none)", n)
	}
}

// TestServerCPU reads this process's CPU time from /proc, as the benchmark reads each
// server's: it grows when the process works, and is unknown for the lua variant.
func TestServerCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system: the benchmark prints no CPU column here")
	}
	const url = "http://self.invalid"
	serverPIDs[url] = os.Getpid()
	defer delete(serverPIDs, url)
	before, ok := serverCPU(target{url: url})
	if !ok {
		t.Fatal("serverCPU of this process: unknown")
	}
	// Work until the CPU time grows (it counts in 10 ms ticks), for at most 10 s.
	after := before
	for start := time.Now(); after <= before && time.Since(start) < 10*time.Second; {
		if after, ok = serverCPU(target{url: url}); !ok {
			t.Fatal("serverCPU of this process: unknown")
		}
	}
	if after <= before {
		t.Fatalf("serverCPU after 10 s of work: %v, before %v", after, before)
	}
	if _, ok := serverCPU(target{url: url, lua: &fleet{}}); ok {
		t.Fatal("serverCPU of the lua variant: known, want unknown (its server is Redis)")
	}
}
