package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults of the Inventory's settings.
const (
	DefaultNamespace     = "rg"
	DefaultShards        = 16
	MaxShards            = 256 // an event's Seq keeps the shard in its low 8 bits
	DefaultRetention     = 25 * time.Hour
	DefaultSweepInterval = 250 * time.Millisecond
)

var _ revguard.Inventory = (*Inventory)(nil)

// Inventory is the distributed revguard.Inventory: the SKUs and their reservations
// live in Redis (one server or a Cluster), shared by any number of nodes. Each SKU
// belongs to one of Shards shards; every change is one Lua script on the keys of one
// shard, so Redis applies the changes of a SKU one at a time, in one order, and each
// change appends its events to the shard's outbox stream in the same atomic step.
//
// A change is durable when Redis answers only if the server writes its AOF with
// appendfsync always (see CheckDurability).
//
// Set the exported fields before Open. The client is the caller's: Close does not
// close it.
type Inventory struct {
	// Namespace starts every key ("<ns>:…" or "{<ns>:<shard>}:…"), so that
	// deployments and tests can share a server. Default "rg".
	Namespace string
	// Shards is the number of shards, 1 to MaxShards; default 16. The first Open of a
	// namespace stores it; an Open with another value fails.
	Shards int
	// Now is the clock. Nil: the scripts read Redis's TIME, one clock for every node.
	// Either way a SKU's changes take max(that time, the SKU's last change time), so
	// that its times never go back.
	Now func() time.Time
	// Logger receives the sweeper's failures.
	Logger *slog.Logger
	// Retention is how long a final reservation and its idempotency record stay in
	// Redis (the ledger keeps them for good); default 25 hours, more than the API's
	// 24-hour idempotency window. An idempotency key's binding lasts as long.
	Retention time.Duration
	// SweepInterval is the pause between two sweeps of the shards for due holds (and
	// old reservations); default 250ms, so that a hold comes back well within a
	// second of its deadline.
	SweepInterval time.Duration
	// ReadOnly opens a namespace a deployment has opened already, to read it (export,
	// verify): Open stores nothing, starts no sweeper and takes the namespace's Shards,
	// and it fails when no Inventory has opened the namespace (a mistyped one).
	// Changes fail; FindSKU and Availability still expire a SKU's due holds, as any
	// node's reads do (export and verify call neither).
	ReadOnly bool

	client goredis.UniversalClient
	sc     *scripts
	tags   []string // shard → "{ns:shard}"

	state  atomic.Int32 // stateNew, stateOpen, stateClosed
	cancel context.CancelFunc
	wg     sync.WaitGroup // the sweeper
}

const (
	stateNew int32 = iota
	stateOpen
	stateClosed
)

// NewInventory returns an Inventory on client with the default settings. Call Open
// before use.
func NewInventory(client goredis.UniversalClient) *Inventory {
	return &Inventory{
		Namespace:     DefaultNamespace,
		Shards:        DefaultShards,
		Logger:        slog.Default(),
		Retention:     DefaultRetention,
		SweepInterval: DefaultSweepInterval,
		client:        client,
	}
}

// Open checks the settings against the namespace's (storing them on its first Open),
// loads the scripts, and starts the sweeper goroutine, which Close stops. It fails
// with CodeUnavailable when Redis cannot be reached.
func (inv *Inventory) Open(ctx context.Context) (err error) {
	if !inv.state.CompareAndSwap(stateNew, stateOpen) {
		return errors.New("redis: open inventory: already opened")
	}
	defer func() {
		if err != nil {
			inv.sc = nil
			inv.state.Store(stateNew) // Open may be tried again
		}
	}()
	inv.Namespace = cmp.Or(inv.Namespace, DefaultNamespace)
	inv.Shards = cmp.Or(inv.Shards, DefaultShards)
	inv.Logger = cmp.Or(inv.Logger, slog.Default())
	inv.Retention = cmp.Or(inv.Retention, DefaultRetention)
	inv.SweepInterval = cmp.Or(inv.SweepInterval, DefaultSweepInterval)
	switch {
	case inv.client == nil:
		return errors.New("redis: open inventory: no client")
	case !validNamespace(inv.Namespace):
		return fmt.Errorf("redis: open inventory: invalid namespace %q", inv.Namespace)
	case inv.Shards < 1 || inv.Shards > MaxShards:
		return fmt.Errorf("redis: open inventory: shards must be between 1 and %d", MaxShards)
	case inv.Retention < 0 || inv.SweepInterval < 0:
		return errors.New("redis: open inventory: negative retention or sweep interval")
	}
	if inv.ReadOnly {
		n, err := readShards(ctx, inv.client, inv.Namespace)
		switch {
		case err != nil:
			return err
		case n == 0:
			return fmt.Errorf("redis: no deployment in namespace %q (is the namespace right?)", inv.Namespace)
		}
		inv.Shards = n // the deployment's, whatever this one was given
	} else if err := checkMeta(ctx, inv.client, inv.Namespace, inv.Shards); err != nil {
		return err
	}
	sc := loadScripts()
	for _, s := range sc.all() {
		if err := s.Load(ctx, inv.client).Err(); err != nil {
			return storeErr("load scripts", err)
		}
	}
	inv.sc = sc
	inv.tags = make([]string, inv.Shards)
	for i := range inv.tags {
		inv.tags[i] = tagOf(inv.Namespace, i)
	}
	if inv.ReadOnly {
		return nil
	}
	sctx, cancel := context.WithCancel(context.Background())
	inv.cancel = cancel
	inv.wg.Add(1)
	go inv.runSweeper(sctx)
	return nil
}

// checkMeta stores the number of shards of namespace ns on its first use, and fails
// when it was stored with another value: keys would be looked up in the wrong shard.
func checkMeta(ctx context.Context, c goredis.UniversalClient, ns string, shards int) error {
	key := ns + ":meta"
	if err := c.HSetNX(ctx, key, "shards", shards).Err(); err != nil {
		return storeErr("store settings", err)
	}
	got, err := c.HGet(ctx, key, "shards").Result()
	if err != nil {
		return storeErr("read settings", err)
	}
	if got != strconv.Itoa(shards) {
		return fmt.Errorf("redis: namespace %q has %s shards, not %d: every node of a deployment needs the same number", ns, got, shards)
	}
	return nil
}

// readShards returns the number of shards stored in namespace ns, or 0 when no
// Inventory has opened it yet.
func readShards(ctx context.Context, c goredis.UniversalClient, ns string) (int, error) {
	got, err := c.HGet(ctx, ns+":meta", "shards").Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, storeErr("read settings", err)
	}
	n, err := strconv.Atoi(got)
	if err != nil || n < 1 || n > MaxShards {
		return 0, fmt.Errorf("redis: namespace %q: corrupt shard count %q", ns, got)
	}
	return n, nil
}

// Close stops the sweeper. Later changes fail with CodeUnavailable; reads still work
// while the client is open.
func (inv *Inventory) Close() error {
	if !inv.state.CompareAndSwap(stateOpen, stateClosed) {
		return nil
	}
	if inv.cancel != nil {
		inv.cancel()
	}
	inv.wg.Wait()
	return nil
}

// writable fails unless changes are allowed.
func (inv *Inventory) writable(ctx context.Context) error {
	if inv.state.Load() != stateOpen || inv.sc == nil || inv.ReadOnly {
		return revguard.Errorf(revguard.CodeUnavailable, "the inventory is not open")
	}
	return ctx.Err()
}

// readable fails unless the inventory was opened.
func (inv *Inventory) readable(ctx context.Context) error {
	if inv.sc == nil {
		return revguard.Errorf(revguard.CodeUnavailable, "the inventory is not open")
	}
	return ctx.Err()
}

// now returns the clock argument of a script: "" lets the script read Redis TIME.
func (inv *Inventory) now() string {
	if inv.Now == nil {
		return ""
	}
	return formatTime(inv.Now())
}
