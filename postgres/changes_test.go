package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
)

// changesOf returns n changes after seq last, of SKU sku, at t, each with a body of
// its own.
func changesOf(last uint64, n int, sku string, t time.Time) []revguard.Change {
	out := make([]revguard.Change, n)
	for i := range out {
		seq := last + uint64(i) + 1
		out[i] = revguard.Change{Seq: seq, Type: revguard.ChangeHeld, SKU: sku, Time: t.Add(time.Duration(i)),
			Body: fmt.Appendf(nil, `{"id":%q}`, revguard.ChangeID(seq))}
	}
	return out
}

// TestChangeLog appends, reads back, refuses an append from a stale version without
// changing anything, and prunes.
func TestChangeLog(t *testing.T) {
	ctx := t.Context()
	db := MustOpenDB(t)
	l := postgres.NewChangeLog(db)
	st, err := l.LoadStreamChangeState(ctx)
	if err != nil || st.LastSeq != 0 || st.Version != 0 || len(st.Positions) != 0 || len(st.SKUs) != 0 {
		t.Fatalf("new log: %+v, %v", st, err)
	}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 123456789, time.UTC)
	opens := t0.Add(time.Hour)
	skus := []revguard.SKUCounts{{SKU: "a", Stock: 10, Held: 3, Sold: 1, PerCustomerLimit: 2, HoldSeconds: 60, OpensAt: opens}, {SKU: "b", Stock: 5}}
	if err := l.AppendStreamChanges(ctx, 0, changesOf(0, 3, "a", t0), map[int]string{0: "5-0", 3: "7-1"}, skus); err != nil {
		t.Fatal(err)
	}
	// A second writer that read version 0 is refused, and changes nothing.
	if err := l.AppendStreamChanges(ctx, 0, changesOf(0, 2, "b", t0), map[int]string{0: "6-0"}, nil); !errors.Is(err, revguard.ErrChangeLogMoved) {
		t.Fatalf("stale append: %v, want ErrChangeLogMoved", err)
	}
	// A gap in the seqs is refused.
	if err := l.AppendStreamChanges(ctx, 1, changesOf(4, 1, "b", t0), nil, nil); err == nil || errors.Is(err, revguard.ErrChangeLogMoved) {
		t.Fatalf("append after a gap: %v, want an error", err)
	}
	skus[1].Held = 2
	if err := l.AppendStreamChanges(ctx, 1, changesOf(3, 2, "b", t0.Add(time.Hour)), map[int]string{3: "8-0"}, skus[1:]); err != nil {
		t.Fatal(err)
	}
	st, err = l.LoadStreamChangeState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := revguard.StreamChangeState{LastSeq: 5, Version: 2, Positions: map[int]string{0: "5-0", 3: "8-0"},
		SKUs: map[string]revguard.SKUCounts{"a": skus[0], "b": skus[1]}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("state\n got %+v\nwant %+v", st, want)
	}
	got, err := l.ReadChanges(ctx, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	wantRead := append(changesOf(0, 3, "a", t0)[1:], changesOf(3, 1, "b", t0.Add(time.Hour))...)
	if !reflect.DeepEqual(got, wantRead) {
		t.Fatalf("read after 1\n got %+v\nwant %+v", got, wantRead)
	}
	if last, err := l.LastChange(ctx); err != nil || last != 5 {
		t.Fatalf("last change %d, %v; want 5", last, err)
	}
	// Pruning before the second batch's time deletes the first batch only, and keeps
	// the seqs going.
	if n, err := l.PruneChanges(ctx, t0.Add(time.Minute)); err != nil || n != 3 {
		t.Fatalf("pruned %d, %v; want 3", n, err)
	}
	if got, err := l.ReadChanges(ctx, 0, 10); err != nil || len(got) != 2 || got[0].Seq != 4 {
		t.Fatalf("after pruning: %+v, %v", got, err)
	}
	if last, err := l.LastChange(ctx); err != nil || last != 5 {
		t.Fatalf("last change after pruning %d, %v; want 5", last, err)
	}
}

// TestChangeFeed wakes a waiter on one node after another node appends, within about
// a poll.
func TestChangeFeed(t *testing.T) {
	schema := MustCreateSchema(t)
	writer := postgres.NewChangeLog(MustOpenDBIn(t, schema))
	feed := &postgres.ChangeFeed{Log: postgres.NewChangeLog(MustOpenDBIn(t, schema)), Poll: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); feed.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	woke := make(chan error, 1)
	go func() { woke <- feed.WaitChanges(t.Context(), 0) }()
	select {
	case err := <-woke:
		t.Fatalf("wait returned before any change: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := writer.AppendStreamChanges(t.Context(), 0, changesOf(0, 2, "a", time.Now()), nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not woken by another node's append")
	}
	if got := feed.LastChange(); got != 2 {
		t.Fatalf("last change %d, want 2", got)
	}
	got, err := feed.ReadChanges(t.Context(), 1, 10)
	if err != nil || len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("read %+v, %v", got, err)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer wcancel()
	if err := feed.WaitChanges(wctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past the last change: %v, want its context's end", err)
	}
}

// TestChangeFeed_ReadLastChange reads the log's newest change where the feed has not
// polled it (it is not running), and lets the feed's waiters see it.
func TestChangeFeed_ReadLastChange(t *testing.T) {
	schema := MustCreateSchema(t)
	writer := postgres.NewChangeLog(MustOpenDBIn(t, schema))
	feed := &postgres.ChangeFeed{Log: postgres.NewChangeLog(MustOpenDBIn(t, schema))}
	if err := writer.AppendStreamChanges(t.Context(), 0, changesOf(0, 3, "a", time.Now()), nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := feed.LastChange(); got != 0 {
		t.Fatalf("last change before any poll: %d, want 0", got)
	}
	got, err := feed.ReadLastChange(t.Context())
	if err != nil || got != 3 {
		t.Fatalf("read last change: %d, %v; want 3", got, err)
	}
	if got := feed.LastChange(); got != 3 {
		t.Fatalf("last change after the read: %d, want 3", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := feed.WaitChanges(ctx, 2); err != nil {
		t.Fatalf("a waiter after evt_2: %v", err)
	}
}

// TestLead runs fn on one node at a time, and hands over both when the leader stops
// and when its lock's connection is killed.
func TestLead(t *testing.T) {
	schema := MustCreateSchema(t)
	tag := fmt.Sprintf("lead%d", time.Now().UnixNano())
	const nodes = 3
	var running, most atomic.Int32
	var mu sync.Mutex
	// The nodes whose fn runs, and how many terms began. A set, not one variable: a
	// leader whose connection was killed may learn it (at its next check) after
	// another node has already taken the lock and begun its term.
	leading, terms := map[int]bool{}, 0
	stops := make([]context.CancelFunc, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		// Each node's connections carry a name of their own, so that the test can
		// kill the leader's without touching anyone else's.
		db := NewDB(t, schema)
		db.URL += sep(db.URL) + fmt.Sprintf("application_name=%s_%d", tag, i)
		if err := db.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		ctx, cancel := context.WithCancel(t.Context())
		stops[i] = cancel
		wg.Go(func() {
			db.Lead(ctx, "test", 20*time.Millisecond, 20*time.Millisecond, nil, func(ctx context.Context) {
				n := running.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				mu.Lock()
				leading[i] = true
				terms++
				mu.Unlock()
				<-ctx.Done()
				mu.Lock()
				delete(leading, i)
				mu.Unlock()
				running.Add(-1)
			})
		})
	}
	t.Cleanup(func() {
		for _, s := range stops {
			s()
		}
		wg.Wait()
	})
	// other returns a node other than not that leads, or -1.
	other := func(not int) int {
		mu.Lock()
		defer mu.Unlock()
		for i := range leading {
			if i != not {
				return i
			}
		}
		return -1
	}
	// waitLeader waits for a leader other than not, and returns it.
	waitLeader := func(not int) int {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if l := other(not); l >= 0 {
				return l
			}
		}
		t.Fatalf("no leader other than %d", not)
		return -1
	}
	first := waitLeader(-1)
	stops[first]() // the leader stops: another takes over
	second := waitLeader(first)
	if m := most.Load(); m != 1 {
		t.Fatalf("%d nodes led at once", m)
	}

	// The second leader's lock connection is killed from outside, as a network
	// failure would end it: its term ends, and a new one begins (on whichever live
	// node takes the lock first, the second included once it has reconnected).
	mu.Lock()
	before := terms
	mu.Unlock()
	conn := MustConnect(t, schema)
	var killed int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM (SELECT pg_terminate_backend(l.pid) FROM pg_locks l
		JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1) k`,
		fmt.Sprintf("%s_%d", tag, second)).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("killed %d lock connections, %v; want 1", killed, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n, stopped := terms, leading[first]
		mu.Unlock()
		if stopped {
			t.Fatalf("node %d, which stopped, leads again", first)
		}
		if n > before && other(first) >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new term after the leader's connection was killed (%d terms before the kill, %d since)", before, n-before)
		}
	}
}

// sep returns the separator before one more parameter of url.
func sep(url string) string {
	if strings.Contains(url, "?") {
		return "&"
	}
	return "?"
}
