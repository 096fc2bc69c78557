package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard/internal/tick"
)

// NodeHealth is one node's last report of its health.
type NodeHealth struct {
	Name   string    `json:"name"`
	Ready  bool      `json:"ready"`
	Detail string    `json:"detail,omitempty"` // why it is not ready
	At     time.Time `json:"at"`               // when it reported, by its clock
	// Stats is what Nodes.Stats gave, as JSON (the node's counters, which the
	// dashboard sums over the fleet); absent without it.
	Stats json.RawMessage `json:"stats,omitempty"`
}

// Nodes is the fleet's register of node health, for the dashboard: each node reports
// its own every Every into one hash, <Namespace>:nodes, field Name, and anyone lists
// the nodes that reported lately. A node that stops gracefully removes its entry; one
// that dies drops out of the list after Stale, and its entry is deleted by the next
// node that lists the register an hour later.
type Nodes struct {
	Client    goredis.UniversalClient
	Namespace string // "rg" when empty
	Name      string // this node's name, unique in the fleet
	// Ready reports this node's health (Main.Ready); nil: always ready.
	Ready func(ctx context.Context) error
	// Stats, when set, returns what the node reports with its health besides (it is
	// encoded as JSON).
	Stats func() any
	Every time.Duration    // 0: a second
	Stale time.Duration    // 0: 5 × Every
	Now   func() time.Time // nil: time.Now
}

// forgetAfter is how long a silent node's entry is kept before List deletes it.
const forgetAfter = time.Hour

func (n *Nodes) key() string { return cmp.Or(n.Namespace, "rg") + ":nodes" }

func (n *Nodes) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

func (n *Nodes) every() time.Duration { return cmp.Or(n.Every, time.Second) }

// Run reports this node's health at once and every Every until ctx ends, then removes
// its entry. A report that fails (Redis down) is skipped: the next one makes up for it.
func (n *Nodes) Run(ctx context.Context) {
	tick.NowAndEvery(ctx, n.every(), func() { n.report(ctx) })
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	n.Client.HDel(dctx, n.key(), n.Name)
	cancel()
}

func (n *Nodes) report(ctx context.Context) {
	h := NodeHealth{Name: n.Name, Ready: true, At: n.now().UTC()}
	if n.Ready != nil {
		if err := n.Ready(ctx); err != nil {
			h.Ready, h.Detail = false, err.Error()
		}
	}
	if n.Stats != nil {
		h.Stats, _ = json.Marshal(n.Stats())
	}
	b, _ := json.Marshal(h)
	rctx, cancel := context.WithTimeout(ctx, n.every())
	defer cancel()
	n.Client.HSet(rctx, n.key(), n.Name, b)
}

// List returns the nodes that reported within Stale, by name. An entry that does
// not decode, or that is older than an hour, is deleted.
func (n *Nodes) List(ctx context.Context) ([]NodeHealth, error) {
	m, err := n.Client.HGetAll(ctx, n.key()).Result()
	if err != nil {
		return nil, storeErr("list nodes", err)
	}
	now := n.now()
	stale := cmp.Or(n.Stale, 5*n.every())
	var out []NodeHealth
	var forget []string
	for name, v := range m {
		var h NodeHealth
		if json.Unmarshal([]byte(v), &h) != nil || h.Name != name || now.Sub(h.At) > forgetAfter {
			forget = append(forget, name)
			continue
		}
		if now.Sub(h.At) <= stale {
			out = append(out, h)
		}
	}
	if len(forget) > 0 {
		n.Client.HDel(ctx, n.key(), forget...)
	}
	slices.SortFunc(out, func(a, b NodeHealth) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}
