package redis

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults of the Outbox's settings.
const (
	DefaultGroup        = "ledger"
	DefaultOutboxBatch  = 1024
	DefaultMinIdle      = 30 * time.Second
	DefaultTrimInterval = 5 * time.Second
	defaultBlock        = time.Second
)

// Outbox copies the inventory's outbox streams, one per shard, into a Ledger, exactly
// once in effect. Every node runs one, all in one consumer group, so that each entry
// is delivered to one node; a node that dies leaves its entries pending, and another
// takes them over once they have been idle for MinIdle (XAUTOCLAIM). An entry is
// acknowledged only once ApplyEvents has returned nil for it, so an event may reach
// the ledger twice (after a crash between the two) but never not at all: the ledger
// must apply events idempotently and in any order (each row keeps the Seq of the last
// event applied to it). Streams are trimmed only below the oldest entry that the
// group has not acknowledged.
//
// Set the exported fields before Run.
type Outbox struct {
	// Namespace is the inventory's (default "rg"); the number of shards is read from
	// it.
	Namespace string
	// Group is the consumer group (default "ledger"); Consumer names this node in it
	// and must be unique per node (default: host name, process id and a random part).
	Group, Consumer string
	// BatchSize is the most events per ApplyEvents (default 1024).
	BatchSize int
	// MinIdle is how long an entry stays pending with a consumer before another takes
	// it over: longer than any ApplyEvents takes (default 30s).
	MinIdle time.Duration
	// TrimInterval is the pause between two trims of the streams (default 5s).
	TrimInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a failed read or apply;
	// it doubles after each failure. Defaults: 10ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Block is how long a reader's XREADGROUP waits for new entries before it looks
	// again, and so about how long Run takes to return once ctx is done (a blocked
	// read is not interrupted). Default 1s.
	Block  time.Duration
	Logger *slog.Logger     // defaults to slog.Default()
	Now    func() time.Time // defaults to time.Now
	// KeepChanges makes Run create ChangesGroup on each stream too, at its start, when
	// it is missing, so that Trim keeps every entry for a ChangeFollower from the very
	// first, even before one runs.
	KeepChanges bool

	client goredis.UniversalClient

	inFlight   atomic.Int64  // entries read by this node and not yet acknowledged
	applied    atomic.Uint64 // events this node applied
	oldestTime atomic.Int64  // unix ns of the oldest event read but not applied; 0: none
}

// NewOutbox returns an Outbox on client with the default settings.
func NewOutbox(client goredis.UniversalClient) *Outbox {
	return &Outbox{client: client, Namespace: DefaultNamespace, Group: DefaultGroup}
}

// ns and group return the namespace and group, defaults filled in. (Run sets the other
// defaults; Backlog and Trim, which may run beside it, need only these two.)
func (o *Outbox) ns() string    { return cmp.Or(o.Namespace, DefaultNamespace) }
func (o *Outbox) group() string { return cmp.Or(o.Group, DefaultGroup) }

// delivery is a batch of one shard's entries read by a reader goroutine.
type delivery struct {
	stream string
	ids    []string // of the entries decoded into events, to acknowledge
	events []revguard.Event
}

func (o *Outbox) defaults() {
	if o.Consumer == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		o.Consumer = fmt.Sprintf("%s-%d-%s", cmp.Or(host, "node"), os.Getpid(), hex.EncodeToString(b[:]))
	}
	o.BatchSize = cmp.Or(o.BatchSize, DefaultOutboxBatch)
	o.MinIdle = cmp.Or(o.MinIdle, DefaultMinIdle)
	o.TrimInterval = cmp.Or(o.TrimInterval, DefaultTrimInterval)
	o.MinBackoff = cmp.Or(o.MinBackoff, 10*time.Millisecond)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, 5*time.Second)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Block = cmp.Or(o.Block, defaultBlock)
}

// Run follows every shard's stream until ctx is done, then returns nil. It waits for
// the namespace to be opened by an Inventory, creates the group where missing, and
// starts one reader goroutine per shard (XREADGROUP, and XAUTOCLAIM every MinIdle/2),
// which it stops and waits for before returning. Its own goroutine applies what the
// readers deliver, a batch of up to BatchSize events at a time, retrying a failed
// ApplyEvents with backoff (an event is never skipped), then acknowledges the batch
// and, every TrimInterval, trims the streams. Entries read but not applied when ctx
// ends stay pending, for the next consumer.
func (o *Outbox) Run(ctx context.Context, ledger revguard.Ledger) error {
	if o.client == nil || ledger == nil {
		return errors.New("redis: outbox: a client and a ledger are required")
	}
	o.defaults()
	b := backoff{min: o.MinBackoff, max: o.MaxBackoff}
	var streams []string
	for {
		var err error
		if streams, err = o.setup(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		o.Logger.Error("redis: outbox: set up the consumer group; retrying", "err", err)
		if !b.wait(ctx) {
			return nil
		}
	}

	rctx, stop := context.WithCancel(ctx)
	ch := make(chan delivery, len(streams))
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() { o.read(rctx, s, ch) })
	}
	defer wg.Wait() // the readers return once rctx is done
	defer stop()

	lastTrim := time.Now()
	for {
		var batch []delivery
		select {
		case <-ctx.Done():
			return nil
		case d := <-ch:
			batch = append(batch, d)
		}
		n := len(batch[0].events)
	drain:
		for n < o.BatchSize {
			select {
			case d := <-ch:
				batch = append(batch, d)
				n += len(d.events)
			default:
				break drain
			}
		}
		if !o.apply(ctx, ledger, batch, n) {
			return nil
		}
		if time.Since(lastTrim) >= o.TrimInterval {
			lastTrim = time.Now()
			if err := o.Trim(ctx); err != nil && ctx.Err() == nil {
				o.Logger.Warn("redis: outbox: trim the streams", "err", err)
			}
		}
	}
}

// setup reads the number of shards, waiting for an Inventory to have opened the
// namespace, and creates the consumer group on each shard's stream.
func (o *Outbox) setup(ctx context.Context) ([]string, error) {
	shards, err := readShards(ctx, o.client, o.ns())
	if err != nil {
		return nil, err
	}
	if shards == 0 {
		return nil, fmt.Errorf("redis: outbox: namespace %q not opened by an inventory yet", o.ns())
	}
	streams := make([]string, shards)
	for i := range streams {
		streams[i] = tagOf(o.ns(), i) + ":outbox"
		if err := createGroup(ctx, o.client, streams[i], o.group()); err != nil {
			return nil, err
		}
		if o.KeepChanges {
			if err := createGroup(ctx, o.client, streams[i], ChangesGroup); err != nil {
				return nil, err
			}
		}
	}
	return streams, nil
}

// createGroup creates group on stream, reading from its first entry, unless it
// exists.
func createGroup(ctx context.Context, c goredis.UniversalClient, stream, group string) error {
	err := c.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && !goredis.HasErrorPrefix(err, "BUSYGROUP") {
		return storeErr("create consumer group", err)
	}
	return nil
}

// apply applies the events of batch (n of them), retrying until ApplyEvents succeeds,
// then acknowledges them. It reports false when ctx ended first: nothing is
// acknowledged then.
func (o *Outbox) apply(ctx context.Context, ledger revguard.Ledger, batch []delivery, n int) bool {
	events := batch[0].events
	if len(batch) > 1 {
		events = make([]revguard.Event, 0, n)
		for _, d := range batch {
			events = append(events, d.events...)
		}
	}
	if len(events) > 0 {
		oldest := events[0].Time
		for _, e := range events {
			if e.Time.Before(oldest) {
				oldest = e.Time
			}
		}
		o.oldestTime.Store(oldest.UnixNano())
		b := backoff{min: o.MinBackoff, max: o.MaxBackoff}
		for {
			err := ledger.ApplyEvents(ctx, events)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return false
			}
			o.Logger.Error("redis: outbox: apply events; retrying", "events", len(events), "err", err)
			if !b.wait(ctx) {
				return false
			}
		}
	}
	// Applied: acknowledge even if ctx has just ended, or the next consumer applies
	// them again (harmless, but not free).
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pipe := o.client.Pipeline()
	for _, d := range batch {
		if len(d.ids) > 0 {
			pipe.XAck(actx, d.stream, o.group(), d.ids...)
		}
	}
	if _, err := pipe.Exec(actx); err != nil {
		o.Logger.Warn("redis: outbox: acknowledge applied events; another consumer will apply them again", "err", err)
	}
	o.inFlight.Add(-int64(n))
	o.applied.Add(uint64(len(events)))
	o.oldestTime.Store(0)
	return true
}

// read is a reader goroutine of Run for one stream: it delivers new entries, and
// every MinIdle/2 the entries idle for MinIdle with any consumer, until ctx is done.
func (o *Outbox) read(ctx context.Context, stream string, ch chan<- delivery) {
	b := backoff{min: o.MinBackoff, max: o.MaxBackoff}
	var lastClaim time.Time
	failing := false
	for ctx.Err() == nil {
		var err error
		if time.Since(lastClaim) >= o.MinIdle/2 {
			lastClaim = time.Now()
			err = o.claim(ctx, stream, ch)
		}
		if err == nil {
			var res []goredis.XStream
			res, err = o.client.XReadGroup(ctx, &goredis.XReadGroupArgs{
				Group: o.group(), Consumer: o.Consumer, Streams: []string{stream, ">"},
				Count: int64(o.BatchSize), Block: o.Block,
			}).Result()
			switch {
			case errors.Is(err, goredis.Nil):
				err = nil
			case err == nil && len(res) == 1:
				o.deliver(ctx, stream, res[0].Messages, ch)
			}
		}
		if err == nil {
			b.reset()
			failing = false
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if goredis.HasErrorPrefix(err, "NOGROUP") { // the stream was deleted
			err = createGroup(ctx, o.client, stream, o.group())
			if err == nil && o.KeepChanges {
				err = createGroup(ctx, o.client, stream, ChangesGroup)
			}
		}
		if !failing {
			o.Logger.Error("redis: outbox: read stream; retrying", "stream", stream, "err", err)
			failing = true
		}
		b.wait(ctx)
	}
}

// claim takes over, and delivers, the entries of stream idle for MinIdle.
func (o *Outbox) claim(ctx context.Context, stream string, ch chan<- delivery) error {
	start := "0-0"
	for {
		msgs, next, err := o.client.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
			Stream: stream, Group: o.group(), Consumer: o.Consumer, MinIdle: o.MinIdle,
			Start: start, Count: int64(o.BatchSize),
		}).Result()
		if err != nil {
			return err
		}
		if len(msgs) > 0 {
			o.Logger.Info("redis: outbox: took over idle entries", "stream", stream, "entries", len(msgs))
			o.deliver(ctx, stream, msgs, ch)
		}
		if next == "0-0" || next == "" || ctx.Err() != nil {
			return nil
		}
		start = next
	}
}

// deliver decodes msgs and hands them to Run. An entry that does not decode is logged
// and left pending: never applied, never acknowledged, never trimmed.
func (o *Outbox) deliver(ctx context.Context, stream string, msgs []goredis.XMessage, ch chan<- delivery) {
	d := delivery{stream: stream, ids: make([]string, 0, len(msgs)), events: make([]revguard.Event, 0, len(msgs))}
	for _, m := range msgs {
		e, err := DecodeEvent(m.Values)
		if err != nil {
			o.Logger.Error("redis: outbox: undecodable entry left pending", "stream", stream, "id", m.ID, "err", err)
			continue
		}
		d.ids = append(d.ids, m.ID)
		d.events = append(d.events, e)
	}
	if len(d.ids) == 0 {
		return
	}
	o.inFlight.Add(int64(len(d.ids)))
	select {
	case ch <- d:
	case <-ctx.Done():
		o.inFlight.Add(-int64(len(d.ids))) // left pending, for whoever comes next
	}
}

// InFlight returns the number of entries this node has read and not yet
// acknowledged: the metric "outbox entries pending on this node".
func (o *Outbox) InFlight() int64 { return o.inFlight.Load() }

// Applied returns the number of events this node has applied since Run started.
func (o *Outbox) Applied() uint64 { return o.applied.Load() }

// Lag returns how long the oldest event that this node has read but not yet applied
// has been waiting since it happened, or 0 when it waits for new entries: the metric
// "ledger lag in seconds" of this node. Backlog gives the whole group's.
func (o *Outbox) Lag() time.Duration {
	n := o.oldestTime.Load()
	if n == 0 {
		return 0
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	return max(0, now().Sub(time.Unix(0, n)))
}

// backoff is the exponential wait between retries.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

// wait sleeps for the next step, reporting false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	b.cur = min(max(b.cur*2, b.min), b.max)
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
