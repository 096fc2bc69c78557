// Package webhook delivers the change log to the webhook endpoints that the admin
// registers: each change wanted by an endpoint is POSTed to it at least once, signed
// as Standard Webhooks specifies (Sign, Verify), in the log's order, with retries on a
// schedule of at least a day, after which the endpoint is paused.
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"
)

// DefaultSchedule is the wait before each retry of a failed delivery, in the manner of
// Standard Webhooks: about 27.6 hours from the first attempt to the eighth and last,
// after which the endpoint is paused.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Defaults of the Dispatcher's settings.
const (
	DefaultTimeout = 10 * time.Second       // one attempt, response included
	DefaultJitter  = 0.2                    // each wait is its schedule's ±20%
	DefaultPoll    = time.Second            // how often the endpoints are read again
	readBatch      = 256                    // changes read at a time
	recordEvery    = 250 * time.Millisecond // how often a busy endpoint's cursor is stored
	maxResponse    = 64 << 10               // bytes of a response read before the connection is dropped
)

// Dispatcher delivers changes to every active endpoint of Store. Each endpoint has its
// own goroutine, which sends one request at a time in Seq order: a change is sent only
// once every earlier change the endpoint wants was accepted, so changes of one SKU
// arrive in order; a slow or failing endpoint holds up only itself. Concurrency is
// bounded by the number of endpoints (revguard.MaxWebhooks). An endpoint's place
// (its cursor, failures and next attempt) is stored after each failed attempt, and
// while deliveries succeed every 250ms and whenever the endpoint has caught up, so a
// restart carries on where it stopped, redelivering at most the changes of the last
// quarter of a second.
//
// Set the exported fields before Run.
type Dispatcher struct {
	Store   revguard.Webhooks
	Changes revguard.ChangeReader

	Client   *http.Client    // defaults to one without redirects, Timeout per attempt
	Timeout  time.Duration   // per attempt; 0 means DefaultTimeout
	Schedule []time.Duration // nil means DefaultSchedule
	Jitter   float64         // 0 means DefaultJitter; negative means none
	Poll     time.Duration   // 0 means DefaultPoll

	// Peak, when set, reports whether the hot path is at a peak (cmd/revguard: the
	// change writer's detector): deliveries then wait, polling every 50ms, until it
	// ends or the change has waited MaxDefer (0 means revguard.DefaultMaxDefer), so
	// that signing and sending never compete with reservations for the CPU.
	Peak     func() bool
	MaxDefer time.Duration

	Logger *slog.Logger                         // defaults to slog.Default()
	Now    func() time.Time                     // defaults to time.Now
	After  func(time.Duration) <-chan time.Time // defaults to time.After; tests record the waits

	kick    chan struct{}
	mu      sync.Mutex
	running map[string]*worker // by endpoint id
	wg      sync.WaitGroup
}

// Kick makes Run read the endpoints again at once (after one is created, deleted,
// paused or resumed).
func (d *Dispatcher) Kick() {
	d.mu.Lock()
	if d.kick == nil {
		d.kick = make(chan struct{}, 1)
	}
	k := d.kick
	d.mu.Unlock()
	select {
	case k <- struct{}{}:
	default:
	}
}

// worker is an endpoint's goroutine as Run sees it.
type worker struct {
	cancel context.CancelFunc
	// failures is the worker's count of failed attempts, raised after the store is
	// and lowered before it, so that the store never holds fewer: a stored count
	// below it means the endpoint was resumed (its failures reset) while the worker
	// waited to retry, and Run restarts the worker from the store.
	failures atomic.Int64
}

// Run starts and stops an endpoint's goroutine as endpoints become active or not,
// until ctx is done; then it waits for them and returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.Store == nil || d.Changes == nil {
		return errors.New("webhook: Store and Changes are required")
	}
	d.Kick() // creates the channel
	d.mu.Lock()
	kick := d.kick
	d.running = make(map[string]*worker)
	d.mu.Unlock()
	log := cmp.Or(d.Logger, slog.Default())
	defer d.wg.Wait()
	t := time.NewTicker(cmp.Or(d.Poll, DefaultPoll))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-t.C:
		}
		eps, err := d.Store.ListWebhooks(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("webhook: list endpoints", "err", err)
			}
			continue
		}
		active := make(map[string]bool, len(eps))
		d.mu.Lock()
		for _, ep := range eps {
			if ep.Status != revguard.WebhookActive {
				continue
			}
			active[ep.ID] = true
			if wk, ok := d.running[ep.ID]; ok {
				// Resumed while it waited to retry: it restarts from the store. The
				// list may predate the worker's last failure, so the store is read again.
				if n := wk.failures.Load(); int64(ep.Failures) < n {
					if cur, err := d.Store.FindWebhook(ctx, ep.ID); err == nil && int64(cur.Failures) < n {
						wk.cancel()
					}
				}
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			wk := &worker{cancel: cancel}
			d.running[ep.ID] = wk
			d.wg.Add(1)
			// The endpoint's goroutine: it runs until Run cancels it (the endpoint is
			// deleted or paused, or ctx ends) or it pauses the endpoint itself.
			go func() {
				defer d.wg.Done()
				// The list may predate the endpoint's last goroutine pausing it (it
				// records the pause, then leaves running): start from the stored state.
				cur, err := d.Store.FindWebhook(wctx, ep.ID)
				switch {
				case err == nil && cur.Status == revguard.WebhookActive:
					wk.failures.Store(int64(cur.Failures))
					d.deliver(wctx, cur, wk, log.With("webhook", ep.ID))
				case err != nil && revguard.ErrorCode(err) != revguard.CodeWebhookNotFound && wctx.Err() == nil:
					// The store did not answer: wait before Run starts it again.
					log.Error("webhook: read endpoint", "webhook", ep.ID, "err", err)
					d.wait(wctx, d.now().Add(time.Second))
				}
				d.mu.Lock()
				delete(d.running, ep.ID)
				d.mu.Unlock()
				cancel()
				d.Kick() // an endpoint still active (a restart) gets its new goroutine at once
			}()
		}
		for id, wk := range d.running {
			if !active[id] {
				wk.cancel()
			}
		}
		d.mu.Unlock()
	}
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Dispatcher) after(w time.Duration) <-chan time.Time {
	if d.After != nil {
		return d.After(w)
	}
	return time.After(w)
}

// wait blocks until t, reporting false when ctx ended first.
func (d *Dispatcher) wait(ctx context.Context, t time.Time) bool {
	w := t.Sub(d.now())
	if w <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-d.after(w):
		return true
	case <-ctx.Done():
		return false
	}
}

// delay returns the wait before retry n (1 for the first), jittered, and false when
// the schedule has no retry n.
func (d *Dispatcher) delay(n int) (time.Duration, bool) {
	s := d.Schedule
	if s == nil {
		s = DefaultSchedule
	}
	if n < 1 || n > len(s) {
		return 0, false
	}
	w := s[n-1]
	j := cmp.Or(d.Jitter, DefaultJitter)
	if j > 0 {
		w = time.Duration(float64(w) * (1 - j + 2*j*rand.Float64()))
	}
	return w, true
}

// deliver is an endpoint's goroutine: it follows the change log from the endpoint's
// cursor and delivers each wanted change, retrying on the schedule, until ctx ends or
// the schedule runs out (then it pauses the endpoint).
func (d *Dispatcher) deliver(ctx context.Context, ep revguard.Webhook, wk *worker, log *slog.Logger) {
	key, err := ParseSecret(ep.Secret)
	if err != nil {
		log.Error("webhook: unusable secret; pausing the endpoint", "err", err)
		d.record(ctx, ep.ID, revguard.WebhookDelivery{Cursor: ep.Cursor, LastError: "unusable secret", Paused: true}, log)
		return
	}
	st := revguard.WebhookDelivery{Cursor: ep.Cursor, Failures: ep.Failures, NextAttemptAt: ep.NextAttemptAt, LastError: ep.LastError}
	// A success is stored at most every recordEvery while deliveries flow, and before
	// the goroutine waits or ends: a crash may send the changes since again (at least
	// once), and the store is not written once per delivery.
	dirty, recorded := false, time.Now()
	defer func() {
		if dirty {
			d.record(ctx, ep.ID, st, log)
		}
	}()
	for ctx.Err() == nil {
		changes, err := d.Changes.ReadChanges(ctx, st.Cursor, readBatch)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("webhook: read changes", "after", st.Cursor, "err", err)
				d.wait(ctx, d.now().Add(time.Second))
			}
			continue
		}
		if len(changes) == 0 {
			if dirty {
				d.record(ctx, ep.ID, st, log)
				dirty, recorded = false, time.Now()
			}
			d.Changes.WaitChanges(ctx, st.Cursor)
			continue
		}
		skipped := false
		for _, c := range changes {
			if !ep.Wants(c.Type) {
				st.Cursor, skipped = c.Seq, true
				continue
			}
			if skipped {
				dirty, skipped = true, false
			}
			for {
				if !st.NextAttemptAt.IsZero() && !d.wait(ctx, st.NextAttemptAt) {
					return
				}
				if !revguard.WaitPeak(ctx, d.Peak, c.Time, d.MaxDefer, 0, d.now) || ctx.Err() != nil {
					return
				}
				err := d.post(ctx, ep.URL, key, c)
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					failed := st.Failures > 0
					st = revguard.WebhookDelivery{Cursor: c.Seq, LastSuccessAt: d.now()}
					dirty = true
					wk.failures.Store(0) // before the store, which never holds fewer failures than this
					if failed || time.Since(recorded) >= recordEvery {
						d.record(ctx, ep.ID, st, log)
						dirty, recorded = false, time.Now()
					}
					break
				}
				st.Failures++
				st.LastError = err.Error()
				dirty = false // recorded below, with the success before it
				w, ok := d.delay(st.Failures)
				if !ok {
					st.Paused, st.NextAttemptAt = true, time.Time{}
					log.Warn("webhook: the last retry failed; endpoint paused", "change", c.Seq, "attempts", st.Failures, "err", err)
					d.record(ctx, ep.ID, st, log)
					return
				}
				st.NextAttemptAt = d.now().Add(w)
				log.Info("webhook: delivery failed; will retry", "change", c.Seq, "attempt", st.Failures, "retry_in", w, "err", err)
				d.record(ctx, ep.ID, st, log)
				wk.failures.Store(int64(st.Failures))
			}
		}
		if skipped {
			dirty = true
		}
	}
}

// record stores st, logging a failure (the next record or a redelivery makes up for it).
func (d *Dispatcher) record(ctx context.Context, id string, st revguard.WebhookDelivery, log *slog.Logger) {
	if err := d.Store.RecordDelivery(context.WithoutCancel(ctx), id, st); err != nil {
		log.Error("webhook: record delivery", "err", err)
	}
}

// post sends one change and reports whether the endpoint accepted it (any 2xx).
func (d *Dispatcher) post(ctx context.Context, url string, key []byte, c revguard.Change) error {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(d.Timeout, DefaultTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(c.Body))
	if err != nil {
		return fmt.Errorf("bad url: %w", err)
	}
	id := revguard.ChangeID(c.Seq)
	ts := d.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "revguard-webhook/1")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(key, id, ts, c.Body))
	client := d.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return errors.New("timed out")
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// defaultClient follows no redirects: a 3xx is a failed delivery, as Standard Webhooks
// recommends (a moved endpoint is registered again).
var defaultClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	},
}
