package redis

import (
	"context"
	_ "embed"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Backlog is what the ledger still lacks, over every shard and node.
type Backlog struct {
	Pending     int64     // entries delivered to a consumer and not acknowledged
	Undelivered int64     // entries not delivered to any consumer yet
	Oldest      time.Time // when the oldest of them was appended (Redis's clock); zero: none
}

// Events returns the ledger's lag in events.
func (b Backlog) Events() int64 { return b.Pending + b.Undelivered }

// Backlog reads the group's backlog from Redis: the metric "ledger lag" in events and,
// from its oldest entry, in seconds.
func (o *Outbox) Backlog(ctx context.Context) (Backlog, error) {
	shards, err := readShards(ctx, o.client, o.ns())
	if err != nil {
		return Backlog{}, err
	}
	var bl Backlog
	for i := range shards {
		stream := tagOf(o.ns(), i) + ":outbox"
		st, err := o.streamState(ctx, stream)
		if err != nil {
			return Backlog{}, err
		}
		if st.undelivered > 0 {
			// Redis counts the entries read exactly until it restarts from its AOF
			// (see lua/outbox_lag.lua, which Trim runs to repair the count): a lag of
			// up to maxLagCheck entries is checked against the entries beyond the last
			// delivered one.
			n := min(st.undelivered, maxLagCheck)
			after, err := o.client.XRangeN(ctx, stream, st.beyond, "+", n).Result()
			if err != nil {
				return Backlog{}, storeErr("read outbox", err)
			}
			if int64(len(after)) < n {
				st.undelivered = int64(len(after))
			}
		}
		bl.Pending += st.pending
		bl.Undelivered += st.undelivered
		if t := st.oldest; !t.IsZero() && (bl.Oldest.IsZero() || t.Before(bl.Oldest)) {
			bl.Oldest = t
		}
	}
	return bl, nil
}

// Trim trims every stream below the oldest entry that the group has not acknowledged
// or the change log (ChangesGroup, when it exists) has not read, and repairs the
// group's count of entries read where a restart left it wrong (lua/outbox_lag.lua).
// Run calls it every TrimInterval.
func (o *Outbox) Trim(ctx context.Context) error {
	shards, err := readShards(ctx, o.client, o.ns())
	if err != nil {
		return err
	}
	for i := range shards {
		stream := tagOf(o.ns(), i) + ":outbox"
		st, err := o.streamState(ctx, stream)
		if err != nil {
			return err
		}
		if st.trim == "" {
			continue
		}
		if err := outboxLagScript.Run(ctx, o.client, []string{stream}, o.group(), maxLagCheck).Err(); err != nil {
			return storeErr("repair the outbox's lag", err)
		}
		if err := o.client.XTrimMinID(ctx, stream, st.trim).Err(); err != nil {
			return storeErr("trim outbox", err)
		}
	}
	return nil
}

// maxLagCheck bounds the entries that Backlog and lua/outbox_lag.lua read to check
// the lag Redis reports.
const maxLagCheck = 64

//go:embed lua/outbox_lag.lua
var outboxLagSource string

// outboxLagScript repairs a consumer group's count of entries read (Trim).
var outboxLagScript = goredis.NewScript(outboxLagSource)

// streamState is the group's position in one stream.
type streamState struct {
	pending, undelivered int64
	oldest               time.Time // of the oldest entry pending or undelivered
	keep                 string    // the lowest id the group needs; "": no group
	trim                 string    // the lowest id anyone needs (keep, or the change log's); "": no group
	beyond               string    // the id after the last delivered one
}

// streamState reads the group's position in stream. It reads the last delivered id
// before the pending entries: whatever is delivered in between is above that id, and
// whatever is acknowledged in between only makes keep lower than it could be.
func (o *Outbox) streamState(ctx context.Context, stream string) (streamState, error) {
	groups, err := o.client.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if goredis.HasErrorPrefix(err, "ERR no such key") {
			return streamState{}, nil
		}
		return streamState{}, storeErr("read consumer group", err)
	}
	var st streamState
	found := false
	changes := ""
	for _, g := range groups {
		switch g.Name {
		case o.group():
			found = true
			st.keep = nextID(g.LastDeliveredID)
			st.beyond = st.keep
			st.undelivered = g.Lag
		case ChangesGroup:
			changes = nextID(g.LastDeliveredID)
		}
	}
	if !found {
		return streamState{}, nil
	}
	p, err := o.client.XPending(ctx, stream, o.group()).Result()
	if err != nil {
		return streamState{}, storeErr("read pending entries", err)
	}
	st.pending = p.Count
	if p.Count > 0 && lessID(p.Lower, st.keep) {
		st.keep = p.Lower
	}
	st.trim = st.keep
	if changes != "" && lessID(changes, st.trim) {
		st.trim = changes
	}
	// The oldest entry not yet acknowledged: the keep id, if it exists.
	first, err := o.client.XRangeN(ctx, stream, st.keep, "+", 1).Result()
	if err != nil {
		return streamState{}, storeErr("read outbox", err)
	}
	if len(first) == 1 {
		if ms, _, ok := splitID(first[0].ID); ok {
			st.oldest = time.UnixMilli(int64(ms))
		}
	}
	if st.undelivered < 0 { // Redis cannot tell after some trims: count them
		n, err := o.client.XLen(ctx, stream).Result()
		if err != nil {
			return streamState{}, storeErr("read outbox", err)
		}
		st.undelivered = max(0, n-st.pending)
	}
	return st, nil
}

// splitID splits a stream entry id "<ms>-<seq>".
func splitID(id string) (ms, seq uint64, ok bool) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			a, err1 := strconv.ParseUint(id[:i], 10, 64)
			b, err2 := strconv.ParseUint(id[i+1:], 10, 64)
			return a, b, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}

// nextID returns the smallest stream id after id.
func nextID(id string) string {
	ms, seq, ok := splitID(id)
	if !ok {
		return "0-1"
	}
	if seq == ^uint64(0) {
		return strconv.FormatUint(ms+1, 10) + "-0"
	}
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10)
}

// lessID reports a < b for stream ids.
func lessID(a, b string) bool {
	am, as, _ := splitID(a)
	bm, bs, _ := splitID(b)
	return am < bm || am == bm && as < bs
}
