package journal_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/journal"
)

// crashChildEnv names the journal directory when the test binary runs as the crash
// test's writer child.
const crashChildEnv = "REVGUARD_JOURNAL_CRASH_CHILD_DIR"

// crashChild appends and waits from many goroutines with real fsync, and prints each
// seq after Wait returned for it: an acknowledged change. It runs until killed.
func crashChild(dir string) {
	j := journal.New(dir)
	j.SegmentSize = 16 << 10
	j.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := j.Open(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := range 32 {
		go func() {
			for i := 0; ; i++ {
				ev := revguard.Event{Type: revguard.EventReserved, Time: time.Now(), SKU: "crash",
					ReservationID: fmt.Sprintf("w%d-%d", w, i), CustomerID: strconv.Itoa(w), Quantity: 1}
				seq, err := j.Append(&ev)
				if err == nil {
					err = j.Wait(context.Background(), seq)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintln(out, seq)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrash kills a writer child with SIGKILL at random moments, over and over on the
// same directory. After each kill the journal must open (cutting any torn tail), hold
// every acknowledged seq, replay contiguously, and let the next child continue.
// REVGUARD_CRASH_CYCLES raises the number of cycles (default 8).
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cycles := 8
	if n, err := strconv.Atoi(os.Getenv("REVGUARD_CRASH_CYCLES")); err == nil && n > 0 {
		cycles = n
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var maxAcked uint64
	torn := 0 // cycles whose kill left a torn tail that Open cut off
	for cycle := range cycles {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 20 + r.IntN(400) // acknowledgements to see before the kill
		sc := bufio.NewScanner(stdout)
		seen := 0
		for sc.Scan() {
			seq, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", sc.Text())
			}
			maxAcked = max(maxAcked, seq)
			if seen++; seen == killAt {
				// Kill while the child keeps writing: in mid-batch, mid-fsync or mid-roll.
				cmd.Process.Kill()
				break
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		if seen < killAt {
			t.Fatalf("cycle %d: child stopped after %d acknowledgements", cycle, seen)
		}

		files := segmentFiles(t, dir)
		before, err := os.Stat(files[len(files)-1])
		if err != nil {
			t.Fatal(err)
		}
		j := MustOpenJournal(t, dir, segmentSize(16<<10))
		if after, err := os.Stat(files[len(files)-1]); err == nil && after.Size() < before.Size() {
			torn++
		}
		if j.LastSeq() < maxAcked {
			t.Fatalf("cycle %d: acknowledged seq %d lost: the journal ends at %d", cycle, maxAcked, j.LastSeq())
		}
		var n uint64
		err = j.Replay(0, func(ev *revguard.Event) error {
			if n++; ev.Seq != n || ev.SKU != "crash" {
				return fmt.Errorf("replayed seq %d (%q) as event %d", ev.Seq, ev.SKU, n)
			}
			return nil
		})
		if err != nil || n != j.LastSeq() {
			t.Fatalf("cycle %d: replayed %d events of %d: %v", cycle, n, j.LastSeq(), err)
		}
		t.Logf("cycle %d: killed after %d acks; %d events, %d acknowledged", cycle, seen, n, maxAcked)
		j.Close()
	}
	t.Logf("%d cycles, %d torn tails cut", cycles, torn)
}
