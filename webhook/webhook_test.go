package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/sqlite"
	"github.com/revenueguard/revguard/webhook"
)

// TestSign_StandardWebhooksVector checks Sign against the example of the Standard
// Webhooks specification, which every library of it verifies.
func TestSign_StandardWebhooksVector(t *testing.T) {
	key, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := webhook.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s; want %s", got, want)
	}
}

// TestVerify covers what a receiver refuses: a changed body, another secret, a
// timestamp outside the replay window, missing headers.
func TestVerify(t *testing.T) {
	secret := webhook.NewSecret()
	key, _ := webhook.ParseSecret(secret)
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1"}`)
	header := func(ts int64, b []byte) http.Header {
		h := http.Header{}
		h.Set(webhook.HeaderID, "evt_1")
		h.Set(webhook.HeaderTimestamp, fmt.Sprint(ts))
		h.Set(webhook.HeaderSignature, "v1,bm90IGl0 "+webhook.Sign(key, "evt_1", ts, b))
		return h
	}
	if id, err := webhook.Verify(secret, header(now.Unix(), body), body, now, webhook.DefaultTolerance); err != nil || id != "evt_1" {
		t.Fatalf("Verify of a good delivery = %q, %v", id, err)
	}
	for _, tc := range []struct {
		name   string
		secret string
		h      http.Header
		body   []byte
		want   error
	}{
		{"ChangedBody", secret, header(now.Unix(), body), []byte(`{"id":"evt_2"}`), webhook.ErrBadSignature},
		{"OtherSecret", webhook.NewSecret(), header(now.Unix(), body), body, webhook.ErrBadSignature},
		{"TooOld", secret, header(now.Unix()-301, body), body, webhook.ErrTooOld},
		{"FromTheFuture", secret, header(now.Unix()+301, body), body, webhook.ErrTooOld},
		{"NoHeaders", secret, http.Header{}, body, webhook.ErrNoSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := webhook.Verify(tc.secret, tc.h, tc.body, now, webhook.DefaultTolerance); err != tc.want {
				t.Fatalf("Verify = %v; want %v", err, tc.want)
			}
		})
	}
}

// memChanges is an in-memory change log for the dispatcher (revguard.ChangeReader).
type memChanges struct {
	mu      sync.Mutex
	changes []revguard.Change
	last    revguard.SeqNotifier
}

func (m *memChanges) add(t revguard.ChangeType, sku string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seq := uint64(len(m.changes) + 1)
	body, _ := json.Marshal(map[string]any{"id": revguard.ChangeID(seq), "seq": seq, "type": t, "sku": map[string]any{"id": sku}})
	m.changes = append(m.changes, revguard.Change{Seq: seq, Type: t, SKU: sku, Time: time.Now(), Body: body})
	m.last.Publish(seq)
}

func (m *memChanges) ReadChanges(_ context.Context, after uint64, max int) ([]revguard.Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if after >= uint64(len(m.changes)) {
		return nil, nil
	}
	end := min(len(m.changes), int(after)+max)
	return slices.Clone(m.changes[after:end]), nil
}

func (m *memChanges) LastChange() uint64 { return m.last.Load() }

func (m *memChanges) ReadLastChange(context.Context) (uint64, error) { return m.last.Load(), nil }

func (m *memChanges) WaitChanges(ctx context.Context, after uint64) error {
	return m.last.Wait(ctx, after)
}

// receiver is a webhook endpoint on loopback that verifies every request's signature
// and answers what its reply function says.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string
	reply  func(n int, id string) int // status for the n-th request (from 1)

	mu       sync.Mutex
	attempts []string          // ids, in arrival order
	bodies   map[string]string // by id
	bad      int               // requests whose signature did not verify
	arrived  chan string
}

func newReceiver(t *testing.T, reply func(n int, id string) int) *receiver {
	r := &receiver{t: t, reply: reply, bodies: map[string]string{}, arrived: make(chan string, 1000)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id, err := webhook.Verify(r.secret, req.Header, body, time.Now(), webhook.DefaultTolerance)
		r.mu.Lock()
		if err != nil || req.Method != "POST" || req.Header.Get("Content-Type") != "application/json" {
			r.bad++
			r.mu.Unlock()
			w.WriteHeader(400)
			return
		}
		if prev, ok := r.bodies[id]; ok && prev != string(body) {
			t.Errorf("%s redelivered with another body:\n%s\n%s", id, prev, body)
		}
		r.bodies[id] = string(body)
		r.attempts = append(r.attempts, id)
		n := len(r.attempts)
		r.mu.Unlock()
		r.arrived <- id
		w.WriteHeader(r.reply(n, id))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad > 0 {
		r.t.Errorf("%d requests had a bad signature", r.bad)
	}
	return slices.Clone(r.attempts)
}

// waitFor waits until the receiver has had n requests.
func (r *receiver) waitFor(n int) {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	for len(r.got()) < n {
		select {
		case <-r.arrived:
		case <-deadline:
			r.t.Fatalf("the receiver got %v; want %d requests", r.got(), n)
		}
	}
}

// recorder is the dispatcher's After: it records each wait and ends it at once, so
// that a schedule of hours runs in no time.
type recorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (rc *recorder) after(d time.Duration) <-chan time.Time {
	rc.mu.Lock()
	rc.waits = append(rc.waits, d)
	rc.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

func (rc *recorder) get() []time.Duration {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.waits)
}

// env is a dispatcher over a real SQLite store and an in-memory change log.
type env struct {
	store   *sqlite.Webhooks
	changes *memChanges
	d       *webhook.Dispatcher
	waits   *recorder
}

func newEnv(t *testing.T, configure func(d *webhook.Dispatcher)) *env {
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "revguard.db"))
	if err := db.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{store: sqlite.NewWebhooks(db), changes: &memChanges{}, waits: &recorder{}}
	e.d = &webhook.Dispatcher{Store: e.store, Changes: e.changes, After: e.waits.after, Poll: 10 * time.Millisecond}
	if configure != nil {
		configure(e.d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func (e *env) register(t *testing.T, r *receiver, types ...revguard.ChangeType) string {
	t.Helper()
	r.secret = webhook.NewSecret()
	w, err := e.store.CreateWebhook(t.Context(), revguard.Webhook{ID: fmt.Sprintf("wh_%020d", time.Now().UnixNano()),
		URL: r.srv.URL + "/hook", Types: types, Secret: r.secret, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	e.d.Kick()
	return w.ID
}

// waitStored waits until the endpoint's stored state satisfies ok.
func (e *env) waitStored(t *testing.T, id string, ok func(revguard.Webhook) bool) revguard.Webhook {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		w, err := e.store.FindWebhook(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(w) {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoint %s stays at %+v", id, w)
		}
	}
}

func ids(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, revguard.ChangeID(uint64(i)))
	}
	return out
}

// TestDispatcher_DeliversWantedInOrder: every wanted change once, signed, in order;
// the others skipped; the cursor stored.
func TestDispatcher_DeliversWantedInOrder(t *testing.T) {
	e := newEnv(t, nil)
	r := newReceiver(t, func(int, string) int { return 204 })
	id := e.register(t, r, revguard.ChangeHeld, revguard.ChangeSKUSoldOut)
	var want []string
	for i := range 40 {
		typ := []revguard.ChangeType{revguard.ChangeHeld, revguard.ChangeConfirmed, revguard.ChangeSKUSoldOut}[i%3]
		e.changes.add(typ, fmt.Sprintf("sku-%d", i%4))
		if typ != revguard.ChangeConfirmed {
			want = append(want, revguard.ChangeID(uint64(i+1)))
		}
	}
	r.waitFor(len(want))
	e.waitStored(t, id, func(w revguard.Webhook) bool { return w.Cursor >= 39 })
	if got := r.got(); !slices.Equal(got, want) {
		t.Fatalf("deliveries %v; want %v", got, want)
	}
	if w := e.waits.get(); len(w) != 0 {
		t.Fatalf("waits %v without a failure", w)
	}
}

// TestDispatcher_RetriesOnSchedule: a change refused with 500s is retried after each
// wait of the schedule (jittered within its bounds), with the same id and body, and
// the next change goes only once it was accepted.
func TestDispatcher_RetriesOnSchedule(t *testing.T) {
	schedule := []time.Duration{time.Second, time.Minute, time.Hour, 10 * time.Hour}
	e := newEnv(t, func(d *webhook.Dispatcher) { d.Schedule = schedule; d.Jitter = 0.2 })
	r := newReceiver(t, func(n int, _ string) int {
		if n <= 3 {
			return 500
		}
		return 200
	})
	id := e.register(t, r)
	e.changes.add(revguard.ChangeHeld, "a")
	e.changes.add(revguard.ChangeHeld, "a")
	r.waitFor(5)
	if got, want := r.got(), []string{"evt_1", "evt_1", "evt_1", "evt_1", "evt_2"}; !slices.Equal(got, want) {
		t.Fatalf("attempts %v; want %v", got, want)
	}
	waits := e.waits.get()
	if len(waits) != 3 {
		t.Fatalf("waits %v; want the first three of the schedule", waits)
	}
	for i, w := range waits {
		if lo, hi := time.Duration(float64(schedule[i])*0.8)-time.Second, time.Duration(float64(schedule[i])*1.2); w < lo || w > hi {
			t.Errorf("wait %d = %v; want %v ±20%%", i+1, w, schedule[i])
		}
	}
	st := e.waitStored(t, id, func(w revguard.Webhook) bool { return w.Cursor == 2 })
	if st.Failures != 0 || st.Status != revguard.WebhookActive || st.LastSuccessAt.IsZero() {
		t.Fatalf("stored %+v", st)
	}
}

// TestDispatcher_TimeoutIsAFailure: an endpoint that does not answer within the
// timeout is retried like one that answered 500.
func TestDispatcher_TimeoutIsAFailure(t *testing.T) {
	e := newEnv(t, func(d *webhook.Dispatcher) { d.Timeout = time.Second; d.Jitter = -1 })
	release := make(chan struct{})
	r := newReceiver(t, func(n int, _ string) int {
		if n == 1 {
			<-release // hangs past the timeout
		}
		return 200
	})
	t.Cleanup(func() { close(release) }) // before the receiver closes, which waits for it
	e.register(t, r)
	e.changes.add(revguard.ChangeConfirmed, "a")
	r.waitFor(2)
	// A wait runs from the failure to the next attempt's time, computed a moment before.
	if waits := e.waits.get(); len(waits) != 1 || waits[0] > webhook.DefaultSchedule[0] || waits[0] < webhook.DefaultSchedule[0]-time.Second {
		t.Fatalf("waits %v; want the schedule's first, %v", waits, webhook.DefaultSchedule[0])
	}
}

// TestDispatcher_PausesThenResumes: after the schedule's last retry fails the endpoint
// is paused, keeping its place; resumed, it delivers from the change that failed.
func TestDispatcher_PausesThenResumes(t *testing.T) {
	e := newEnv(t, func(d *webhook.Dispatcher) { d.Schedule = []time.Duration{time.Second, time.Minute} })
	var mu sync.Mutex
	status := 503
	r := newReceiver(t, func(int, string) int { mu.Lock(); defer mu.Unlock(); return status })
	id := e.register(t, r)
	e.changes.add(revguard.ChangeHeld, "a")
	e.changes.add(revguard.ChangeReleased, "a")
	st := e.waitStored(t, id, func(w revguard.Webhook) bool { return w.Status == revguard.WebhookPaused })
	if st.Failures != 3 || st.Cursor != 0 || st.LastError != "status 503" || st.PausedAt.IsZero() {
		t.Fatalf("paused endpoint %+v; want 3 failures at cursor 0", st)
	}
	if got := r.got(); len(got) != 3 {
		t.Fatalf("attempts %v; want 3", got)
	}
	mu.Lock()
	status = 200
	mu.Unlock()
	if _, err := e.store.ResumeWebhook(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	e.d.Kick()
	r.waitFor(5)
	e.waitStored(t, id, func(w revguard.Webhook) bool { return w.Cursor == 2 && w.Failures == 0 })
	if got := r.got(); !slices.Equal(got[3:], ids(1, 2)) {
		t.Fatalf("after resume %v", got)
	}
}

// TestDispatcher_SlowEndpointDelaysNoOther: an endpoint that hangs holds up only
// itself; another gets every change meanwhile.
func TestDispatcher_SlowEndpointDelaysNoOther(t *testing.T) {
	e := newEnv(t, func(d *webhook.Dispatcher) { d.Timeout = time.Hour })
	release := make(chan struct{})
	slow := newReceiver(t, func(int, string) int { <-release; return 200 })
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	e.register(t, slow)
	fast := newReceiver(t, func(int, string) int { return 200 })
	e.register(t, fast)
	dead := newReceiver(t, nil)
	dead.srv.Close() // refuses connections
	e.register(t, dead)
	for range 100 {
		e.changes.add(revguard.ChangeHeld, "a")
	}
	fast.waitFor(100)
	if got := fast.got(); !slices.Equal(got, ids(1, 100)) {
		t.Fatalf("the fast endpoint got %v", got)
	}
	if got := slow.got(); len(got) != 1 {
		t.Fatalf("the slow endpoint got %v; want its first change, still in flight", got)
	}
	once.Do(func() { close(release) })
	slow.waitFor(100)
}

// TestDispatcher_StandsAsideAtPeaks: while the hot path is at a peak nothing is sent;
// once it ends, everything is.
func TestDispatcher_StandsAsideAtPeaks(t *testing.T) {
	var peak sync.Mutex
	atPeak := true
	e := newEnv(t, func(d *webhook.Dispatcher) {
		d.Peak = func() bool { peak.Lock(); defer peak.Unlock(); return atPeak }
	})
	r := newReceiver(t, func(int, string) int { return 200 })
	id := e.register(t, r)
	e.changes.add(revguard.ChangeHeld, "a")
	e.changes.add(revguard.ChangeHeld, "a")
	// The worker has read the changes and waits: nothing arrives while the peak lasts.
	time.Sleep(200 * time.Millisecond)
	if got := r.got(); len(got) != 0 {
		t.Fatalf("delivered at a peak: %v", got)
	}
	peak.Lock()
	atPeak = false
	peak.Unlock()
	r.waitFor(2)
	e.waitStored(t, id, func(w revguard.Webhook) bool { return w.Cursor == 2 })
}

// TestDispatcher_ResumeDuringBackoff: resuming an endpoint that waits to retry (its
// failures reset in the store) retries at once instead of at the end of the wait, and
// its stored failures stay reset.
func TestDispatcher_ResumeDuringBackoff(t *testing.T) {
	// Waits never end by themselves: only a restart of the worker ends one.
	e := newEnv(t, func(d *webhook.Dispatcher) {
		d.After = func(time.Duration) <-chan time.Time { return make(chan time.Time) }
	})
	r := newReceiver(t, func(n int, _ string) int {
		if n == 1 {
			return 503
		}
		return 200
	})
	id := e.register(t, r)
	e.changes.add(revguard.ChangeHeld, "a")
	e.waitStored(t, id, func(w revguard.Webhook) bool { return w.Failures == 1 && !w.NextAttemptAt.IsZero() })
	if _, err := e.store.ResumeWebhook(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	e.d.Kick()
	r.waitFor(2)
	st := e.waitStored(t, id, func(w revguard.Webhook) bool { return w.Cursor == 1 })
	if st.Failures != 0 || st.Status != revguard.WebhookActive {
		t.Fatalf("stored %+v after the retry", st)
	}
	if got := r.got(); !slices.Equal(got, []string{revguard.ChangeID(1), revguard.ChangeID(1)}) {
		t.Fatalf("deliveries %v", got)
	}
}
