package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/internal/tick"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/webhook"
)

// Timings of the distributed mode.
const (
	// sampleInterval is how often the sampler reads Redis's round trip, the outbox's
	// backlog and whether PostgreSQL answers, for /metrics.
	sampleInterval = time.Second
	// postgresTimeout bounds each PostgreSQL call, so that a database that does not
	// answer costs a request a 503 after a few seconds, not a hang.
	postgresTimeout = 5 * time.Second
)

// Fleet is what a node of the distributed mode opens: the shared Redis (the
// inventory, sessions, rate limits and the outbox streams) and PostgreSQL (the
// ledger, the change log and the webhook endpoints), and the node's own goroutines on
// them: the outbox consumer, which applies the streams to the ledger; the change feed,
// which watches the change log for the node's event streams; the bid for the change
// log's lead (whoever holds it writes the log, delivers the webhooks and prunes); and
// the sampler, which keeps the metrics' readings. Every node of a fleet is the same:
// no node owns anything for good, and any may be lost.
type Fleet struct {
	Redis     goredis.UniversalClient
	Inventory *redis.Inventory
	Room      *redis.WaitingRoom
	RoomLog   *postgres.RoomLog // the ledger's copy of the rooms' audit records
	Sessions  *redis.Sessions
	Outbox    *redis.Outbox
	DB        *postgres.DB
	Ledger    *postgres.Ledger
	// Nodes is the fleet's register of node health that the dashboard lists; this node
	// reports to it once it listens (startNodes).
	Nodes *redis.Nodes

	// The change log (event stream, webhooks) in PostgreSQL: one node at a time, the
	// leader, follows the outbox into it (ChangeFollower), delivers it to the webhook
	// endpoints (Dispatcher) and prunes it; every node serves it from ChangeFeed.
	Changes    *postgres.ChangeLog
	ChangeFeed *postgres.ChangeFeed
	Follower   *redis.ChangeFollower
	Webhooks   *postgres.Webhooks
	Dispatcher *webhook.Dispatcher

	// Warnings are the durability check's: the Redis settings under which acknowledged
	// holds could be lost. serve prints them loudly at start.
	Warnings []string

	outboxDone chan struct{} // closed when Outbox.Run returns
	sample     fleetSample
}

// fleetSample is the sampler's latest reading, which /metrics reports: a scrape never
// waits for Redis or PostgreSQL.
type fleetSample struct {
	redisUp, postgresUp  atomic.Bool
	rtt                  atomic.Int64 // ns of the last PING round trip
	pending, undelivered atomic.Int64 // the outbox group's, all nodes
	oldest               atomic.Int64 // unix ns of the oldest event the ledger lacks; 0: none
	rooms                atomic.Pointer[[]revguard.Room]
}

// sampledRooms lists the waiting rooms as the sampler last read them (none before its
// first reading), as the other sampled gauges are: the last reading while Redis does
// not answer, which revguard_redis_up says.
type sampledRooms struct{ f *Fleet }

func (s sampledRooms) ListRooms(context.Context) ([]revguard.Room, error) {
	if p := s.f.sample.rooms.Load(); p != nil {
		return *p, nil
	}
	return nil, nil
}

// openDistributed opens the fleet's stores in order: Redis (and its durability
// check), the inventory, the sessions, PostgreSQL (migrating under its advisory lock)
// and the ledger; then it starts the outbox consumer and the sampler on bg, tracked by
// m.wg. Each store is kept on m.Fleet only once open, so that Close closes only what
// is open.
func (m *Main) openDistributed(ctx context.Context, bg context.Context, met *serverMetrics) (stores, error) {
	cfg := &m.Config
	log := m.Logger
	f := &Fleet{outboxDone: make(chan struct{})}
	m.Fleet = f

	redis.SetLogger(log)
	client, err := redis.Dial(ctx, cfg.RedisURL)
	if err != nil {
		return stores{}, fmt.Errorf("serve: connect to Redis: %w", err)
	}
	f.Redis = client
	warnings, err := redis.CheckDurability(ctx, client)
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("could not read Redis's persistence settings (%v): "+
			"unless it runs with appendonly yes, appendfsync always and aof-load-truncated no, a crash of Redis can lose acknowledged holds", err))
	}
	for _, w := range warnings {
		log.Warn("redis durability: " + w)
	}
	f.Warnings = warnings

	inv := redis.NewInventory(client)
	inv.Namespace = cfg.RedisNamespace
	inv.Retention = cfg.Retention
	inv.Logger = log.With("component", "inventory")
	if err := inv.Open(ctx); err != nil {
		return stores{}, fmt.Errorf("serve: open the Redis inventory: %w", err)
	}
	f.Inventory = inv

	// The waiting rooms live beside the SKUs; every node's timer admits, at the
	// rooms' own pace.
	room := redis.NewWaitingRoom(inv)
	room.Logger = log.With("component", "waitingroom")
	if err := room.Open(ctx); err != nil {
		return stores{}, fmt.Errorf("serve: open the waiting rooms: %w", err)
	}
	f.Room = room

	sess := redis.NewSessions(client)
	sess.Namespace = cfg.RedisNamespace
	sess.Logger = log.With("component", "sessions")
	sess.Now = m.Now
	if err := sess.Open(ctx); err != nil {
		return stores{}, fmt.Errorf("serve: open the Redis sessions: %w", err)
	}
	f.Sessions = sess

	db := postgres.NewDB(cfg.PostgresURL)
	db.Schema = cfg.PostgresSchema
	db.Timeout = postgresTimeout
	db.Logger = log.With("component", "postgres")
	if err := db.Open(ctx); err != nil {
		return stores{}, fmt.Errorf("serve: open the PostgreSQL ledger: %w", err)
	}
	f.DB = db
	f.Ledger = postgres.NewLedger(db)
	f.RoomLog = postgres.NewRoomLog(db)

	f.Nodes = &redis.Nodes{Client: client, Namespace: cfg.RedisNamespace, Ready: m.Ready}

	f.Outbox = redis.NewOutbox(client)
	f.Outbox.Namespace = cfg.RedisNamespace
	f.Outbox.MinIdle = cfg.OutboxMinIdle
	f.Outbox.Logger = log.With("component", "outbox")
	f.Outbox.KeepChanges = true

	clog := log.With("component", "changes")
	f.Changes = postgres.NewChangeLog(db)
	f.ChangeFeed = &postgres.ChangeFeed{Log: f.Changes, Logger: clog}
	f.Follower = redis.NewChangeFollower(client, f.Changes)
	f.Follower.Namespace = cfg.RedisNamespace
	f.Follower.Appended = f.ChangeFeed.Notify
	f.Follower.Logger = clog
	f.Webhooks = postgres.NewWebhooks(db)
	f.Webhooks.Now = m.Now
	f.Dispatcher = &webhook.Dispatcher{Store: f.Webhooks, Changes: f.ChangeFeed, Logger: log.With("component", "webhook"), Now: m.Now}
	// The feed knows the newest change before the node serves: an event stream opened
	// without `after` starts with the next change, not with the whole log.
	last, err := f.Changes.LastChange(ctx)
	if err != nil {
		return stores{}, fmt.Errorf("serve: read the change log: %w", err)
	}
	f.ChangeFeed.Notify(last)
	m.wg.Add(2)
	// Every node reads the change log's newest seq for its event streams until Close
	// cancels bg; the leader (whichever node holds the lock) writes the log, delivers
	// it to the webhooks and prunes it, and hands over when it stops or is lost.
	go func() {
		defer m.wg.Done()
		f.ChangeFeed.Run(bg)
	}()
	go func() {
		defer m.wg.Done()
		db.Lead(bg, "changes", 0, 0, clog, func(ctx context.Context) {
			clog.Info("leading the change log and the webhooks")
			var wg sync.WaitGroup
			wg.Go(func() { _ = f.Follower.Run(ctx) })
			wg.Go(func() { _ = f.Dispatcher.Run(ctx) })
			wg.Go(func() { m.pruneChanges(ctx, f.Changes) })
			wg.Wait()
		})
	}()
	m.wg.Add(2)
	// The outbox consumer applies the streams to the ledger until Close cancels bg
	// (after letting it apply what it read); it retries every failure itself, so it
	// returns early only on a programming error, which /readyz then reports.
	go func() {
		defer m.wg.Done()
		defer close(f.outboxDone)
		if err := f.Outbox.Run(bg, f.Ledger); err != nil {
			log.Error("outbox stopped: the ledger no longer follows the inventory", "err", err)
		}
	}()
	// The copy of the rooms' audit records into the ledger runs until Close cancels bg
	// (Close copies once more after the HTTP server has stopped).
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		runRoomLogCopy(bg, f.Room, f.RoomLog, log.With("component", "waitingroom"))
	}()
	// The sampler reads the metrics' values every sampleInterval until Close cancels bg.
	go func() {
		defer m.wg.Done()
		f.runSampler(bg)
	}()
	met.registerFleet(f)

	return stores{
		inventory: inv,
		ledger:    f.Ledger,
		sessions:  sess,
		room:      room,
		changes:   f.ChangeFeed,
		webhooks:  f.Webhooks,
		kick:      f.Dispatcher.Kick,
		// The dashboard shows this node's decisions and latency, the fleet's SKUs (read
		// from Redis once a second by each open dashboard) and nodes, and the outbox lag.
		dashboard: &httpapi.Dashboard{LedgerLag: f.Outbox.Lag, SKUs: f.forEachSKU, Nodes: f.dashboardNodes},
		limiter: func(name string, r revguard.Rate) revguard.RateLimiter {
			l := redis.NewRateLimiter(client, name, r)
			l.Namespace = cfg.RedisNamespace
			return l
		},
	}, nil
}

// runSampler refreshes f.sample every sampleInterval until ctx ends.
func (f *Fleet) runSampler(ctx context.Context) {
	tick.NowAndEvery(ctx, sampleInterval, func() { f.takeSample(ctx) })
}

// takeSample reads Redis's round trip and the outbox's backlog, and pings PostgreSQL,
// each bounded by sampleInterval.
func (f *Fleet) takeSample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, sampleInterval)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		rtt, err := redis.Ping(ctx, f.Redis)
		f.sample.redisUp.Store(err == nil)
		if err != nil {
			return
		}
		f.sample.rtt.Store(int64(rtt))
		if bl, err := f.Outbox.Backlog(ctx); err == nil {
			f.sample.pending.Store(bl.Pending)
			f.sample.undelivered.Store(bl.Undelivered)
			var oldest int64
			if !bl.Oldest.IsZero() {
				oldest = bl.Oldest.UnixNano()
			}
			f.sample.oldest.Store(oldest)
		}
	})
	wg.Go(func() { // beside the backlog: a slow read of one leaves the other fresh
		if rooms, err := f.Room.ListRooms(ctx); err == nil {
			f.sample.rooms.Store(&rooms)
		}
	})
	wg.Go(func() { f.sample.postgresUp.Store(f.DB.Ping(ctx) == nil) })
	wg.Wait()
}

// ready reports whether the fleet's stores answer, naming each one that does not,
// and whether the outbox consumer runs.
func (f *Fleet) ready(ctx context.Context) error {
	select {
	case <-f.outboxDone:
		return revguard.Errorf(revguard.CodeUnavailable, "the outbox consumer stopped: the ledger no longer follows the inventory")
	default:
	}
	var redisErr, pgErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, redisErr = redis.Ping(ctx, f.Redis) })
	wg.Go(func() { pgErr = f.DB.Ping(ctx) })
	wg.Wait()
	var down []string
	if redisErr != nil {
		down = append(down, "redis")
	}
	if pgErr != nil {
		down = append(down, "postgres")
	}
	switch len(down) {
	case 0:
		return nil
	case 1:
		return revguard.Errorf(revguard.CodeUnavailable, "%s does not answer", down[0])
	}
	return revguard.Errorf(revguard.CodeUnavailable, "%s do not answer", strings.Join(down, " and "))
}

// drain waits, for at most ledgerDrainTimeout, until the outbox has applied what this
// node read, so that a graceful stop leaves nothing pending under its name (which
// another node would take over only after Config.OutboxMinIdle). Nothing is lost if it
// cannot: the entries stay pending in Redis.
func (f *Fleet) drain(log interface{ Warn(string, ...any) }) {
	if f.Room != nil && f.RoomLog != nil {
		ctx, cancel := context.WithTimeout(context.Background(), ledgerDrainTimeout)
		if _, err := copyRoomLogs(ctx, f.Room, f.RoomLog); err != nil {
			log.Warn("the waiting rooms' last audit records were not copied into the ledger; another node copies them", "err", err)
		}
		cancel()
	}
	deadline := time.Now().Add(ledgerDrainTimeout)
	for f.Outbox.InFlight() > 0 {
		select {
		case <-f.outboxDone:
			return
		default:
		}
		if time.Now().After(deadline) {
			log.Warn("the outbox did not apply what it read before shutdown; another node takes it over",
				"in_flight", f.Outbox.InFlight())
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// close closes the fleet's stores in the reverse order of openDistributed; the
// goroutines must have stopped.
func (f *Fleet) close() error {
	var errs []error
	if f.DB != nil {
		if err := f.DB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close PostgreSQL: %w", err))
		}
	}
	if f.Sessions != nil {
		if err := f.Sessions.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sessions: %w", err))
		}
	}
	if f.Room != nil {
		errs = append(errs, f.Room.Close())
	}
	if f.Inventory != nil {
		if err := f.Inventory.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close inventory: %w", err))
		}
	}
	if f.Redis != nil {
		if err := f.Redis.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close Redis client: %w", err))
		}
	}
	return errors.Join(errs...)
}

// dashboardReadTimeout bounds the dashboard's reads of Redis: a snapshot comes once a
// second.
const dashboardReadTimeout = time.Second

// forEachSKU lists the fleet's SKUs for the dashboard (each read atomically; none
// while Redis does not answer).
func (f *Fleet) forEachSKU(fn func(revguard.SKU) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), dashboardReadTimeout)
	defer cancel()
	_ = f.Inventory.ForEachSKU(ctx, fn)
}

// dashboardNodes lists the nodes that reported their health lately; while Redis does
// not answer, this node alone, not ready.
func (f *Fleet) dashboardNodes(ctx context.Context) []httpapi.DashboardNode {
	ctx, cancel := context.WithTimeout(ctx, dashboardReadTimeout)
	defer cancel()
	list, err := f.Nodes.List(ctx)
	if err != nil {
		return []httpapi.DashboardNode{{Name: f.Nodes.Name, Ready: false, Detail: err.Error()}}
	}
	out := make([]httpapi.DashboardNode, len(list))
	for i, h := range list {
		out[i] = httpapi.DashboardNode{Name: h.Name, Ready: h.Ready, Detail: h.Detail}
		var st httpapi.NodeStats
		if len(h.Stats) > 0 && json.Unmarshal(h.Stats, &st) == nil {
			out[i].Stats = &st
		}
	}
	return out
}

// startNodes makes this node, listening at addr, report its health to the fleet's
// register until bg ends.
func (m *Main) startNodes(bg context.Context, addr string) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	m.Fleet.Nodes.Name = host + " " + addr
	// Each node reports its decisions and reserve latency with its health, so that
	// the dashboard of any node charts the fleet's.
	m.Fleet.Nodes.Stats = func() any { return m.API.Stats() }
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.Fleet.Nodes.Run(bg)
	}()
}
