package inproc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/internal/tick"
)

// DefaultRoomTick is how often a WaitingRoom advances its active rooms.
const DefaultRoomTick = 100 * time.Millisecond

var _ revguard.WaitingRoom = (*WaitingRoom)(nil)

// WaitingRoom is the embedded revguard.WaitingRoom: every room in memory, every change
// written to a revguard.RoomLog (the SQLite ledger) before it is acknowledged or
// applied, and the state rebuilt from the log by Open.
//
// Places are read under a room's read lock only: polling never touches the SKU's
// serialisation point (the room keeps the SKU's opens_at, refreshed by every advance).
// Advance reads the SKU's exact counts through Inventory.FindSKU, once per room and
// tick.
//
// Lock order: WaitingRoom.mu, then room.adv, then room.mu. room.mu is never held across
// a log commit: joins, admissions and the draw enqueue their records under it, which
// keeps the log in the order of memory, and wait for the commit after unlocking (the
// draw freezes the pre-queue meanwhile).
type WaitingRoom struct {
	// Log records every change durably; required.
	Log revguard.RoomLog
	// Inventory gives the SKUs' opens_at and counts; required.
	Inventory revguard.Inventory
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Tick is how often Open's goroutine advances the active rooms; 0 starts none
	// (tests call Advance). NewWaitingRoom sets DefaultRoomTick.
	Tick time.Duration
	// Logger receives the background loop's failures.
	Logger *slog.Logger

	// rooms maps a SKU to its room. It is never changed, only replaced (under mu) by a
	// copy with one more room: a reservation's Claim reads it without a lock, so that a
	// SKU without a room costs its reservations a map lookup and nothing shared.
	mu    sync.Mutex
	rooms atomic.Pointer[map[string]*room]

	commit roomCommitter
	cancel context.CancelFunc
	done   chan struct{}
}

// NewWaitingRoom returns a WaitingRoom over log and inv; call Open before use.
func NewWaitingRoom(log revguard.RoomLog, inv revguard.Inventory) *WaitingRoom {
	return &WaitingRoom{Log: log, Inventory: inv, Tick: DefaultRoomTick, Logger: slog.New(slog.DiscardHandler)}
}

// room is one SKU's waiting room.
type room struct {
	sku string
	adv sync.Mutex // serialises Advance, PutRoom and DeleteRoom of the room

	mu       sync.RWMutex // guards the fields below and every place's fields
	settings revguard.RoomSettings
	enabled  bool
	opensAt  time.Time // the SKU's, as last seen
	places   map[string]*place
	prequeue []*place // before the draw, in join order
	line     []*place // the line: ticket i+1 at line[i]; nil entries for failed joins
	head     int      // line[:head] have been admitted
	admitted []*place // admissions that may be current (pruned by Advance)
	used     int64
	drawn    bool
	drawnAt  time.Time
	seed     []byte
	drawSize int64
	soldOut  bool
	drawing  chan struct{} // non-nil while a draw's records are written; closed after
	tokens   float64       // admissions the pace allows now
	last     time.Time
}

// place is one customer's place.
type place struct {
	customer   string
	joinedAt   time.Time
	ticket     int64 // 0 in the pre-queue
	admitted   bool
	admittedAt time.Time
	until      time.Time
	used       bool
	claimed    bool
	ready      chan struct{} // closed once the join is durable, or failed (err)
	err        error
}

// closedCh is the ready channel of the places rebuilt from the log.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newRoom(sku string) *room { return &room{sku: sku, places: map[string]*place{}} }

func (w *WaitingRoom) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// Open rebuilds the rooms from the log and starts the advancing goroutine when Tick
// is set. The goroutine exits when Close is called.
func (w *WaitingRoom) Open(ctx context.Context) error {
	rooms := map[string]*room{}
	w.rooms.Store(&rooms)
	w.commit.log = w.Log
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if err := w.Log.ReadRoomRecords(ctx, "", w.replay); err != nil {
		return err
	}
	if w.Tick > 0 {
		bg, cancel := context.WithCancel(context.Background())
		w.cancel, w.done = cancel, make(chan struct{})
		go w.run(bg)
	}
	return nil
}

// Close stops the advancing goroutine.
func (w *WaitingRoom) Close() error {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		w.cancel = nil
	}
	return nil
}

// run advances every active room each Tick until ctx ends.
func (w *WaitingRoom) run(ctx context.Context) {
	defer close(w.done)
	tick.Every(ctx, w.Tick, func() {
		var active []string
		for id, r := range *w.rooms.Load() { // set by Open, before this goroutine
			if r.active() {
				active = append(active, id)
			}
		}
		for _, id := range active {
			if err := w.Advance(ctx, id); err != nil && ctx.Err() == nil {
				w.Logger.Warn("waiting room: advance failed", "sku", id, "err", err)
			}
		}
	})
}

// active reports whether Advance has work in r: any room that is on, even with nobody
// in it, since its sold_out follows the SKU (a sale, a release, a restock, a PUT of
// the stock) whether or not anyone waits.
func (r *room) active() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.enabled
}

// find returns the enabled room of sku, or nil.
func (w *WaitingRoom) find(sku string) *room {
	if rooms := w.rooms.Load(); rooms != nil {
		return (*rooms)[sku]
	}
	return nil // not open
}

// add returns the room of sku, adding a new one if there is none.
func (w *WaitingRoom) add(sku string) (r *room, created bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := *w.rooms.Load()
	if r := old[sku]; r != nil {
		return r, false
	}
	rooms := make(map[string]*room, len(old)+1)
	for k, v := range old {
		rooms[k] = v
	}
	r = newRoom(sku)
	rooms[sku] = r
	w.rooms.Store(&rooms)
	return r, true
}

func errNoRoom(sku string) error {
	return revguard.Errorf(revguard.CodeWaitingRoomNotFound, "SKU %s has no waiting room", sku)
}

// PutRoom implements revguard.WaitingRoom.
func (w *WaitingRoom) PutRoom(ctx context.Context, sku string, s revguard.RoomSettings) (revguard.Room, bool, error) {
	if err := s.Validate(); err != nil {
		return revguard.Room{}, false, err
	}
	av, err := w.Inventory.Availability(ctx, sku)
	if err != nil {
		return revguard.Room{}, false, err
	}
	r, created := w.add(sku)

	r.adv.Lock()
	defer r.adv.Unlock()
	now := w.now()
	r.mu.Lock()
	b := w.commit.enqueue(revguard.RoomRecord{Type: revguard.RoomPut, SKU: sku, Time: now, Settings: s})
	r.mu.Unlock()
	if err := w.commit.wait(b); err != nil {
		return revguard.Room{}, false, err
	}
	r.mu.Lock()
	r.settings, r.enabled, r.opensAt = s, true, av.OpensAt
	r.tokens = min(r.tokens, float64(s.AdmitPerSecond))
	r.mu.Unlock()
	return r.view(now), created, nil
}

// DeleteRoom implements revguard.WaitingRoom.
func (w *WaitingRoom) DeleteRoom(ctx context.Context, sku string) error {
	r := w.find(sku)
	if r == nil {
		return errNoRoom(sku)
	}
	r.adv.Lock()
	defer r.adv.Unlock()
	r.mu.Lock()
	if !r.enabled {
		r.mu.Unlock()
		return errNoRoom(sku)
	}
	b := w.commit.enqueue(revguard.RoomRecord{Type: revguard.RoomDeleted, SKU: sku, Time: w.now()})
	r.mu.Unlock()
	if err := w.commit.wait(b); err != nil {
		return err
	}
	r.mu.Lock()
	r.enabled = false
	r.mu.Unlock()
	return nil
}

// FindRoom implements revguard.WaitingRoom.
func (w *WaitingRoom) FindRoom(ctx context.Context, sku string) (revguard.Room, error) {
	r := w.find(sku)
	if r == nil {
		return revguard.Room{}, errNoRoom(sku)
	}
	v := r.view(w.now())
	if !v.Enabled {
		return revguard.Room{}, errNoRoom(sku)
	}
	return v, nil
}

// ListRooms returns every enabled room, by SKU (for the metrics).
func (w *WaitingRoom) ListRooms(ctx context.Context) ([]revguard.Room, error) {
	rooms := w.rooms.Load()
	if rooms == nil {
		return nil, nil
	}
	now := w.now()
	var out []revguard.Room
	for _, r := range *rooms {
		if v := r.view(now); v.Enabled {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b revguard.Room) int { return strings.Compare(a.SKU, b.SKU) })
	return out, nil
}

// view returns the room's state at now.
func (r *room) view(now time.Time) revguard.Room {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v := revguard.Room{SKU: r.sku, RoomSettings: r.settings, Enabled: r.enabled,
		PreQueue: int64(len(r.prequeue)), Waiting: int64(len(r.line) - r.head),
		Used: r.used, Joined: int64(len(r.places)), SoldOut: r.soldOut,
		DrawnAt: r.drawnAt, Seed: r.seed, DrawSize: r.drawSize}
	for _, p := range r.admitted {
		if p.current(now) {
			v.Admitted++
		}
	}
	return v
}

// current reports whether p's admission holds at now: admitted, unused, within its
// window or claimed by a reservation under way.
func (p *place) current(now time.Time) bool {
	return p.admitted && !p.used && (p.claimed || now.Before(p.until))
}

// Join implements revguard.WaitingRoom.
func (w *WaitingRoom) Join(ctx context.Context, sku, customerID string) (revguard.Place, bool, error) {
	r := w.find(sku)
	if r == nil {
		return revguard.Place{}, false, errNoRoom(sku)
	}
	// Closed is the SKU's state now, not the room's sold_out, which the next Advance
	// brings up to date.
	av, closed, err := revguard.SKUClosed(ctx, w.Inventory, sku)
	if err != nil {
		return revguard.Place{}, false, err
	}
	now := w.now()
	r.mu.Lock()
	var p *place
	advanced := false
	for p == nil {
		if !r.enabled {
			r.mu.Unlock()
			return revguard.Place{}, false, errNoRoom(sku)
		}
		if p := r.places[customerID]; p != nil {
			r.mu.Unlock()
			return w.placeOf(ctx, r, p, false)
		}
		r.opensAt = av.OpensAt
		opens := av.OpensAt
		if pre := time.Duration(r.settings.PreQueueSeconds) * time.Second; !opens.IsZero() && now.Before(opens.Add(-pre)) {
			r.mu.Unlock()
			return revguard.Place{}, false, revguard.Errorf(revguard.CodeSaleNotOpen,
				"the waiting room opens at %s", opens.Add(-pre).UTC().Format(time.RFC3339Nano))
		}
		if closed || r.soldOut && advanced {
			r.mu.Unlock()
			return revguard.Place{}, false, revguard.Errorf(revguard.CodeSoldOut, "sold out: the waiting room is closed")
		}
		if r.soldOut {
			// Units came back since the last advance closed the room: advance it now,
			// as the timer would within a tick (it reads the SKU again, under the
			// room's advance lock, and records the reopening once), so that the place
			// is not shown sold out; then look again.
			r.mu.Unlock()
			if err := w.Advance(ctx, sku); err != nil {
				return revguard.Place{}, false, err
			}
			advanced, now = true, w.now() // the join comes after the reopening
			r.mu.Lock()
			continue
		}
		preQueue := !r.drawn && r.drawing == nil && !opens.IsZero() && now.Before(opens)
		if !preQueue && (r.drawing != nil || r.drawDue(opens, now)) {
			// The draw first (it releases r.mu): then everything read above again.
			if err := w.draw(r, now); err != nil {
				r.mu.Unlock()
				return revguard.Place{}, false, err
			}
			continue
		}
		p = &place{customer: customerID, joinedAt: now, ready: make(chan struct{})}
		if preQueue {
			r.prequeue = append(r.prequeue, p)
		} else {
			r.line = append(r.line, p)
			p.ticket = int64(len(r.line))
		}
	}
	r.places[customerID] = p
	b := w.commit.enqueue(revguard.RoomRecord{Type: revguard.RoomJoined, SKU: sku, Time: now, CustomerID: customerID, Ticket: p.ticket})
	r.mu.Unlock()

	if err := w.commit.wait(b); err != nil {
		r.mu.Lock()
		delete(r.places, customerID)
		if p.ticket > 0 {
			r.line[p.ticket-1] = nil
		}
		p.err = err
		r.mu.Unlock()
		close(p.ready)
		return revguard.Place{}, false, err
	}
	close(p.ready)
	return w.placeOf(ctx, r, p, true)
}

// drawDue reports whether the draw must be made before anyone is placed in line at
// now: the sale is open and the pre-queue was not drawn. A room whose SKU never had an
// opens_at and whose pre-queue is empty has no draw: first come, first served.
func (r *room) drawDue(opens, now time.Time) bool {
	return !r.drawn && (opens.IsZero() || !now.Before(opens)) && (len(r.prequeue) > 0 || !opens.IsZero())
}

// draw shuffles the pre-queue with a fresh seed and places it in line once its
// records are durable. Called with r.mu held, it releases it while the records are
// written, so that polls and claims go on during a large draw; r.drawing freezes the
// pre-queue meanwhile (a join waits for the draw, then queues behind it). A caller that
// finds a draw under way waits for it. r.mu is held again when it returns; the caller
// must check again what it read before.
func (w *WaitingRoom) draw(r *room, now time.Time) error {
	if ch := r.drawing; ch != nil {
		r.mu.Unlock()
		<-ch
		r.mu.Lock()
		if !r.drawn {
			return fmt.Errorf("inproc: the draw of %s failed", r.sku)
		}
		return nil
	}
	seed := revguard.NewDrawSeed()
	joined := make([]string, 0, len(r.prequeue))
	for _, p := range r.prequeue {
		if p.err == nil {
			joined = append(joined, p.customer)
		}
	}
	order := revguard.DrawOrder(seed, joined)
	recs := make([]revguard.RoomRecord, 0, len(order)+1)
	recs = append(recs, revguard.RoomRecord{Type: revguard.RoomDrawn, SKU: r.sku, Time: now, Seed: seed, Ticket: int64(len(order))})
	for i, c := range order {
		recs = append(recs, revguard.RoomRecord{Type: revguard.RoomPlaced, SKU: r.sku, Time: now, CustomerID: c, Ticket: int64(i + 1)})
	}
	ch := make(chan struct{})
	r.drawing = ch
	b := w.commit.enqueue(recs...)
	r.mu.Unlock()
	err := w.commit.wait(b)
	r.mu.Lock()
	r.drawing = nil
	defer close(ch)
	if err != nil {
		return err
	}
	r.drawn, r.drawnAt, r.seed, r.drawSize = true, now, seed, int64(len(order))
	for _, c := range order {
		p := r.places[c]
		r.line = append(r.line, p)
		p.ticket = int64(len(r.line))
	}
	r.prequeue = nil
	return nil
}

// placeOf returns p's view once its join is durable.
func (w *WaitingRoom) placeOf(ctx context.Context, r *room, p *place, joined bool) (revguard.Place, bool, error) {
	select {
	case <-p.ready:
	case <-ctx.Done():
		return revguard.Place{}, false, ctx.Err()
	}
	if p.err != nil {
		return revguard.Place{}, false, p.err
	}
	now := w.now()
	r.mu.RLock()
	v := r.placeView(p, now)
	r.mu.RUnlock()
	return v, joined, nil
}

// placeView is p's view at now, under r.mu.
func (r *room) placeView(p *place, now time.Time) revguard.Place {
	v := revguard.Place{SKU: r.sku, CustomerID: p.customer, JoinedAt: p.joinedAt, OpensAt: r.opensAt,
		AdmittedAt: p.admittedAt, AdmittedUntil: p.until, EstimatedWait: -1}
	switch {
	case p.used:
		v.Status = revguard.PlaceUsed
	case p.admitted && p.current(now):
		v.Status = revguard.PlaceAdmitted
	case p.admitted:
		v.Status = revguard.PlaceExpired
	case r.soldOut:
		v.Status = revguard.PlaceSoldOut
	case p.ticket == 0:
		v.Status = revguard.PlacePreQueue
	default:
		v.Status = revguard.PlaceWaiting
		v.Position = max(1, p.ticket-int64(r.head))
		if rate := r.settings.AdmitPerSecond; rate > 0 {
			v.EstimatedWait = time.Duration(v.Position) * time.Second / time.Duration(rate)
		}
	}
	return v
}

// FindPlace implements revguard.WaitingRoom: a map lookup under the room's read lock.
func (w *WaitingRoom) FindPlace(ctx context.Context, sku, customerID string) (revguard.Place, error) {
	r := w.find(sku)
	if r == nil {
		return revguard.Place{}, errNoRoom(sku)
	}
	r.mu.RLock()
	enabled, p := r.enabled, r.places[customerID]
	r.mu.RUnlock()
	switch {
	case !enabled:
		return revguard.Place{}, errNoRoom(sku)
	case p == nil:
		return revguard.Place{}, revguard.Errorf(revguard.CodePlaceNotFound, "no place in the waiting room of SKU %s: join it first", sku)
	}
	v, _, err := w.placeOf(ctx, r, p, false)
	return v, err
}
