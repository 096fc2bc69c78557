package inproc

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/revenueguard/revguard"
)

// sku is one SKU's serialisation point. Its mutex is the only lock a decision takes:
// every change to the SKU and to its reservations happens under it, one at a time.
//
// Lock order: sku.mu, then a resShard.mu or expirer.mu (each held briefly, never
// while taking a sku.mu). No two sku.mu are ever held together.
type sku struct {
	mu sync.Mutex

	id string

	// Published for lock-free readers (Availability, the sold-out fast path, the output
	// gate); written only under mu. A change stores lastSeq before avail, and avail
	// before nextExpiry, so that a reader who sees a value also sees the seq to wait for.
	lastSeq    atomic.Uint64 // seq of the last change applied; the output gate waits for it
	avail      atomic.Int64  // stock - held - sold
	nextExpiry atomic.Int64  // deadline of the earliest hold (Unix ns); math.MaxInt64: none
	opensAt    atomic.Int64  // Unix ns; 0: open at once

	stock, held, sold int64
	timerAt           int64 // deadline registered with the expirer; 0: none
	lastAt            int64 // time of the last change (Unix ns): no later change is timed before it
	book              *book // reservations; nil until the first one (idle SKUs stay small)
	limit             int32 // per-customer limit, at most revguard.MaxPerCustomerLimit
	holdSecs          int32 // hold duration, at most revguard.MaxHoldSeconds

	exists atomic.Bool // the creating PutSKU has been applied

	queue atomic.Pointer[reserveOp] // reserves waiting for mu, newest first (inventory_combine.go)
}

func (s *sku) holdNanos() int64 { return int64(s.holdSecs) * int64(time.Second) }

// book holds the reservations of one SKU, guarded by the SKU's mutex.
type book struct {
	all   []*reservation // every reservation, final ones included, in creation order
	holds holdHeap       // by deadline; entries that are no longer held are skipped when popped
	// Units held or confirmed per customer, without zero entries: a short list while
	// few customers have any (most SKUs), a map beyond that.
	few  []owner
	many map[string]int64
	// final lists the reservations that became final, in the order they did, until
	// they leave memory (evict.go); empty unless Inventory.Retention is set.
	final []finalEntry
	// preImages is set while a snapshot encodes this SKU's reservations in parts
	// (writeSKU): the state each one had when the snapshot copied the SKU, kept by its
	// first change since (reservations made since are kept too, and never read: the
	// map lives for one SKU's encoding, tens of milliseconds). nil otherwise.
	preImages map[*reservation]reservation
}

// beforeChange must be called under the SKU's mutex before r changes: while a
// snapshot encodes the SKU in parts, it keeps r as the snapshot copied it.
func (b *book) beforeChange(r *reservation) {
	if b.preImages == nil {
		return
	}
	if _, ok := b.preImages[r]; !ok {
		b.preImages[r] = *r
	}
}

type owner struct {
	customer string
	units    int64
}

// maxFew is the number of customers kept in book.few before it becomes a map.
const maxFew = 8

func newSKU(id string) *sku {
	s := &sku{id: id}
	s.nextExpiry.Store(math.MaxInt64)
	return s
}

func (s *sku) available() int64 { return s.stock - s.held - s.sold }

func (s *sku) bookOrNew() *book {
	if s.book == nil {
		s.book = &book{}
	}
	return s.book
}

// owned returns the units customer holds or owns of s. Under s.mu.
func (s *sku) owned(customer string) int64 {
	b := s.book
	switch {
	case b == nil:
		return 0
	case b.many != nil:
		return b.many[customer]
	}
	for _, o := range b.few {
		if o.customer == customer {
			return o.units
		}
	}
	return 0
}

// addOwned adds n (possibly negative) to the units customer holds or owns of s.
func (s *sku) addOwned(customer string, n int64) {
	b := s.bookOrNew()
	if b.many != nil {
		if v := b.many[customer] + n; v != 0 {
			b.many[customer] = v
		} else {
			delete(b.many, customer)
		}
		return
	}
	for i := range b.few {
		if b.few[i].customer != customer {
			continue
		}
		if b.few[i].units += n; b.few[i].units == 0 {
			last := len(b.few) - 1
			b.few[i] = b.few[last]
			b.few[last] = owner{}
			b.few = b.few[:last]
		}
		return
	}
	if n == 0 {
		return
	}
	if len(b.few) < maxFew {
		b.few = append(b.few, owner{customer, n})
		return
	}
	b.many = make(map[string]int64, 2*maxFew)
	for _, o := range b.few {
		b.many[o.customer] = o.units
	}
	b.many[customer] = n
	b.few = nil
}

// view returns the public state of s. Under s.mu.
func (s *sku) view() revguard.SKU {
	return revguard.SKU{
		ID:               s.id,
		Stock:            s.stock,
		Available:        s.available(),
		Held:             s.held,
		Sold:             s.sold,
		PerCustomerLimit: int64(s.limit),
		HoldSeconds:      int64(s.holdSecs),
		OpensAt:          unixTime(s.opensAt.Load()),
	}
}

// resState is the compact form of revguard.Status.
type resState uint8

const (
	stHeld resState = iota + 1
	stConfirmed
	stReleased
	stExpired
	stEvicted // final, and gone from memory (evict.go): the ledger answers for it
)

func (st resState) status() revguard.Status {
	switch st {
	case stHeld:
		return revguard.StatusHeld
	case stConfirmed:
		return revguard.StatusConfirmed
	case stReleased:
		return revguard.StatusReleased
	case stExpired:
		return revguard.StatusExpired
	}
	return ""
}

// reservation is one hold. Its id, sku, customer, qty, createdAt, expiresAt and the
// idempotency key never change; the rest is changed only under sku.mu, and once the
// reservation is in its book only after book.beforeChange (a snapshot may be reading
// it in parts). It is kept compact (80 bytes): a million holds must fit in a few
// hundred megabytes.
type reservation struct {
	id        ulid.ULID
	sku       *sku
	customer  string
	createdAt int64     // Unix ns
	expiresAt int64     // Unix ns
	doneAt    int64     // Unix ns of the confirm or release; 0 otherwise
	extra     *resExtra // nil unless an idempotency key or order ref is set
	qty       int32     // at most revguard.MaxPerCustomerLimit
	state     resState
}

// resExtra holds the rarely set strings of a reservation. It is never edited once its
// reservation is in the book: a change makes a new one (a snapshot's kept copy of the
// reservation may share the old).
type resExtra struct {
	idemKey  string
	orderRef string // set by the first successful confirm
}

func (r *reservation) idemKey() string {
	if r.extra == nil {
		return ""
	}
	return r.extra.idemKey
}

func (r *reservation) orderRef() string {
	if r.extra == nil {
		return ""
	}
	return r.extra.orderRef
}

// createdView is r as it was created. It reads only immutable fields, so it needs no
// lock: an idempotent replay returns it.
func (r *reservation) createdView() revguard.Reservation { return r.createdViewID(r.id.String()) }

// createdViewID is createdView with the text of r's id already at hand.
func (r *reservation) createdViewID(idText string) revguard.Reservation {
	return revguard.Reservation{
		ID:         idText,
		SKU:        r.sku.id,
		CustomerID: r.customer,
		Quantity:   int64(r.qty),
		Status:     revguard.StatusHeld,
		CreatedAt:  unixTime(r.createdAt),
		ExpiresAt:  unixTime(r.expiresAt),
	}
}

// view is r in its current state. Under r.sku.mu.
func (r *reservation) view() revguard.Reservation {
	v := r.createdView()
	v.Status = r.state.status()
	switch r.state {
	case stConfirmed:
		v.ConfirmedAt = unixTime(r.doneAt)
	case stReleased:
		v.ReleasedAt = unixTime(r.doneAt)
	}
	v.OrderRef = r.orderRef()
	return v
}

// newID returns a ULID: the creation time in milliseconds, its position within the
// millisecond, then 64 random bits from math/rand/v2's per-thread generator (no global
// lock). Ids sort by creation time to about 15 ns; the random bits make a collision
// (which the caller checks for anyway) vanishingly unlikely.
func newID(nowNanos int64) ulid.ULID {
	var id ulid.ULID
	var ms uint64
	if nowNanos > 0 {
		ms = uint64(nowNanos / int64(time.Millisecond))
	}
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], ms)
	copy(id[:6], t[2:])
	// Then the position within the millisecond (1/65,536 ms steps), so that ids made in
	// one millisecond still sort by creation time, then 64 random bits: unique forever
	// without a shared counter.
	var frac uint16
	if nowNanos > 0 {
		frac = uint16(nowNanos % int64(time.Millisecond) * 65536 / int64(time.Millisecond))
	}
	binary.BigEndian.PutUint16(id[6:8], frac)
	binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	return id
}

// parseID parses a reservation id exactly as the API shows it: an id is an opaque
// string, so another spelling of the same ULID (lower case, which ULID's alphabet
// would read alike) is no id, as in the distributed mode.
func parseID(s string) (ulid.ULID, bool) {
	if len(s) != ulid.EncodedSize {
		return ulid.ULID{}, false
	}
	id, err := ulid.ParseStrict(s)
	return id, err == nil && id.String() == s
}

// unixTime converts Unix nanoseconds to a UTC time; 0 is the zero time.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// unixNanos converts t to Unix nanoseconds; the zero time is 0.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// holdEntry is a hold's deadline in a SKU's heap.
type holdEntry struct {
	at int64
	r  *reservation
}

func (e holdEntry) deadline() int64 { return e.at }

// holdHeap is a SKU's holds by deadline.
type holdHeap = deadlineHeap[holdEntry]

// resTable maps reservation ids to reservations. It is sharded by the id's random
// bits so that concurrent lookups of unrelated reservations do not contend.
type resTable struct {
	shards [resShards]resShard
}

const resShards = 64

type resShard struct {
	mu sync.RWMutex
	m  map[ulid.ULID]*reservation
	_  [32]byte // keep shards on separate cache lines
}

func (t *resTable) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[ulid.ULID]*reservation)
	}
}

// reserve makes room for about n more reservations, so that a recovery does not
// rehash the shards again and again.
func (t *resTable) reserve(n int) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		m := make(map[ulid.ULID]*reservation, len(sh.m)+n/resShards)
		for k, v := range sh.m {
			m[k] = v
		}
		sh.m = m
		sh.mu.Unlock()
	}
}

func (t *resTable) shard(id ulid.ULID) *resShard { return &t.shards[id[15]%resShards] }

func (t *resTable) load(id ulid.ULID) *reservation {
	sh := t.shard(id)
	sh.mu.RLock()
	r := sh.m[id]
	sh.mu.RUnlock()
	return r
}

// insert adds r and reports whether its id was free.
func (t *resTable) insert(r *reservation) bool {
	sh := t.shard(r.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, taken := sh.m[r.id]; taken {
		return false
	}
	sh.m[r.id] = r
	return true
}

func (t *resTable) remove(id ulid.ULID) {
	sh := t.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}
