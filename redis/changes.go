package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

// ChangesGroup is the consumer group that marks, on each shard's outbox stream, the
// last entry the change log has read (its last delivered id, set by the
// ChangeFollower; nothing is ever read through it), so that the outbox's Trim keeps
// every entry the log still needs.
const ChangesGroup = "changes"

// Defaults of the ChangeFollower's settings.
const (
	DefaultChangeBatch = 512                   // entries read from a stream at a time
	DefaultChangePoll  = 50 * time.Millisecond // pause once every stream is read
)

// ChangeFollower turns the outbox streams into the change log of the distributed mode
// (revguard.StreamChangeLog), in each stream's order, so in each SKU's order, and
// exactly once: each append carries the streams' new positions and the version it
// read, so a second follower (two nodes that both think they lead) never appends an
// entry twice, and a restart carries on from the positions the log kept. Changes of
// different shards interleave in the order they are read.
//
// Set the exported fields before Run.
type ChangeFollower struct {
	Namespace string // the inventory's (default "rg")
	Log       revguard.StreamChangeLog
	BatchSize int           // entries read from one stream at a time; 0 means DefaultChangeBatch
	Poll      time.Duration // pause once every stream is read; 0 means DefaultChangePoll
	// Appended, when set, is called with the last change's Seq after each append (the
	// node's ChangeFeed, so that its waiters need not wait for its next poll).
	Appended func(last uint64)
	Logger   *slog.Logger // defaults to slog.Default()

	client goredis.UniversalClient
}

// NewChangeFollower returns a ChangeFollower of the streams on client into log.
func NewChangeFollower(client goredis.UniversalClient, log revguard.StreamChangeLog) *ChangeFollower {
	return &ChangeFollower{client: client, Log: log, Namespace: DefaultNamespace}
}

// Run follows the streams until ctx is done, then returns nil. A failed read or append
// is logged and retried with backoff, from the state the log holds.
func (f *ChangeFollower) Run(ctx context.Context) error {
	if f.Log == nil || f.client == nil {
		return errors.New("redis: change follower: client and Log are required")
	}
	logger := cmp.Or(f.Logger, slog.Default())
	b := backoff{min: 10 * time.Millisecond, max: 5 * time.Second}
	for ctx.Err() == nil {
		err := f.follow(ctx)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, revguard.ErrChangeLogMoved):
			logger.Warn("redis: change follower: another node appended to the change log; reloading")
		default:
			logger.Error("redis: change follower: follow the outbox", "err", err)
			b.wait(ctx)
		}
	}
	return nil
}

// follow loads the log's state and appends the changes of what each read of the
// streams brings, until a read or an append fails or ctx ends.
func (f *ChangeFollower) follow(ctx context.Context) error {
	ns := cmp.Or(f.Namespace, DefaultNamespace)
	shards, err := readShards(ctx, f.client, ns)
	if err != nil {
		return err
	}
	if shards == 0 {
		return fmt.Errorf("namespace %q not opened by an inventory yet", ns)
	}
	streams := make([]string, shards)
	for i := range streams {
		streams[i] = tagOf(ns, i) + ":outbox"
		if err := createGroup(ctx, f.client, streams[i], ChangesGroup); err != nil {
			return err
		}
	}
	st, err := f.Log.LoadStreamChangeState(ctx)
	if err != nil {
		return err
	}
	if err := f.mark(ctx, streams, st.Positions); err != nil {
		return err
	}
	c := revguard.NewChanges(revguard.ChangeState{LastSeq: st.LastSeq, SKUs: st.SKUs})
	batch, poll := cmp.Or(f.BatchSize, DefaultChangeBatch), cmp.Or(f.Poll, DefaultChangePoll)
	var out []revguard.Change
	for {
		moved, events, err := f.read(ctx, streams, st.Positions, batch)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			t := time.NewTimer(poll)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		out = out[:0]
		for i := range events {
			out = c.Apply(out, &events[i])
		}
		if err := f.Log.AppendStreamChanges(ctx, st.Version, out, moved, c.Touched()); err != nil {
			return err // the next follow reloads the state the log kept
		}
		st.Version++
		maps.Copy(st.Positions, moved)
		if len(out) > 0 && f.Appended != nil {
			f.Appended(out[len(out)-1].Seq)
		}
		if err := f.mark(ctx, streams, moved); err != nil {
			return err
		}
	}
}

// read reads up to batch entries of each stream after its position, in one round
// trip, and decodes them: the streams' new positions (of those that moved) and their
// events, each stream's in order.
func (f *ChangeFollower) read(ctx context.Context, streams []string, positions map[int]string, batch int) (map[int]string, []revguard.Event, error) {
	cmds := make([]*goredis.XMessageSliceCmd, len(streams))
	_, err := f.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, s := range streams {
			start := "-"
			if id, ok := positions[i]; ok {
				start = nextID(id)
			}
			cmds[i] = p.XRangeN(ctx, s, start, "+", int64(batch))
		}
		return nil
	})
	if err != nil {
		return nil, nil, storeErr("read outbox", err)
	}
	moved := make(map[int]string)
	var events []revguard.Event
	for i, cmd := range cmds {
		msgs := cmd.Val()
		for _, m := range msgs {
			ev, err := DecodeEvent(m.Values)
			if err != nil {
				// Stop here rather than leave a hole in the log; the entry is
				// logged at every retry until someone looks.
				return nil, nil, fmt.Errorf("decode entry %s of %s: %w", m.ID, streams[i], err)
			}
			events = append(events, ev)
		}
		if len(msgs) > 0 {
			moved[i] = msgs[len(msgs)-1].ID
		}
	}
	return moved, events, nil
}

// mark sets ChangesGroup's last delivered id on each stream to the log's position, so
// that the outbox's Trim keeps what the log has not read. It is called after the
// positions are in the log: should it fail or the node die first, the mark is only
// lower than it could be, and Trim keeps more.
func (f *ChangeFollower) mark(ctx context.Context, streams []string, positions map[int]string) error {
	if len(positions) == 0 {
		return nil
	}
	_, err := f.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range positions {
			if i < len(streams) {
				p.XGroupSetID(ctx, streams[i], ChangesGroup, id)
			}
		}
		return nil
	})
	return storeErr("mark the change log's place in the outbox", err)
}
