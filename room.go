package revguard

import (
	"context"
	"math"
	mrand "math/rand/v2"
	"time"
)

// Limits and defaults of a waiting room's settings (PUT /v1/skus/{sku}/waiting-room).
const (
	DefaultPreQueueSeconds = 3600
	MaxPreQueueSeconds     = 7 * 86_400
	MaxAdmitPerSecond      = 1_000_000
	MaxAdmissionSeconds    = MaxHoldSeconds

	// DrawSeedLen is the length of a draw's seed in bytes (a ChaCha8 key).
	DrawSeedLen = 32
)

// RoomSettings are the admin's settings of a SKU's waiting room.
type RoomSettings struct {
	// PreQueueSeconds is how long before the SKU's opens_at the pre-queue opens.
	PreQueueSeconds int64
	// AdmitPerSecond is the pace of admission: at most this many customers are admitted
	// per second, in batches of up to one second's worth.
	AdmitPerSecond int64
	// AdmissionSeconds is how long an admitted customer has to reserve; 0 means the
	// SKU's hold_seconds.
	AdmissionSeconds int64
}

// Validate checks the ranges of the API; it fails with CodeInvalidRequest.
func (s RoomSettings) Validate() error {
	switch {
	case s.PreQueueSeconds < 0 || s.PreQueueSeconds > MaxPreQueueSeconds:
		return Errorf(CodeInvalidRequest, "pre_queue_seconds must be between 0 and %d", MaxPreQueueSeconds)
	case s.AdmitPerSecond < 1 || s.AdmitPerSecond > MaxAdmitPerSecond:
		return Errorf(CodeInvalidRequest, "admit_per_second must be between 1 and %d", MaxAdmitPerSecond)
	case s.AdmissionSeconds < 0 || s.AdmissionSeconds > MaxAdmissionSeconds:
		return Errorf(CodeInvalidRequest, "admission_seconds must be between 1 and %d", MaxAdmissionSeconds)
	}
	return nil
}

// AdmissionWindow is how long an admission to a SKU whose holds last hold lasts.
func (s RoomSettings) AdmissionWindow(hold time.Duration) time.Duration {
	if s.AdmissionSeconds > 0 {
		return time.Duration(s.AdmissionSeconds) * time.Second
	}
	return hold
}

// PlaceStatus is where a customer stands in a waiting room.
type PlaceStatus string

// The states of a place. A place moves pre_queue → waiting → admitted → used or
// expired; sold_out is shown to pre_queue and waiting places while the room is closed
// (nothing available and nothing held), and goes back to waiting if it reopens.
const (
	PlacePreQueue PlaceStatus = "pre_queue" // joined before opens_at; no position until the draw
	PlaceWaiting  PlaceStatus = "waiting"   // in line, with a position
	PlaceAdmitted PlaceStatus = "admitted"  // may reserve until AdmittedUntil
	PlaceUsed     PlaceStatus = "used"      // the admission bought its reservation
	PlaceExpired  PlaceStatus = "expired"   // the admission lapsed unused
	PlaceSoldOut  PlaceStatus = "sold_out"  // the room is closed: nothing left to wait for
)

// Place is one customer's place in one SKU's waiting room.
type Place struct {
	SKU        string
	CustomerID string
	Status     PlaceStatus
	// Position is 1 for the next in line; 0 when the place has none (pre_queue, and
	// every status after waiting).
	Position      int64
	JoinedAt      time.Time
	OpensAt       time.Time // the SKU's opens_at when the place was read; zero: open
	AdmittedAt    time.Time // zero until admitted
	AdmittedUntil time.Time // zero until admitted
	// EstimatedWait is Position over the room's pace, a lower bound that ignores the
	// stock (-1 when there is no estimate: not waiting).
	EstimatedWait time.Duration
}

// Room is the state of a SKU's waiting room, for its admin.
type Room struct {
	SKU string
	RoomSettings
	Enabled  bool
	PreQueue int64 // customers in the pre-queue (before the draw)
	Waiting  int64 // customers in line after the draw
	Admitted int64 // current admissions (not used, not lapsed)
	Used     int64 // admissions that bought a reservation
	Joined   int64 // places ever taken
	SoldOut  bool  // closed: nothing available and nothing held
	DrawnAt  time.Time
	Seed     []byte // the draw's seed; nil before the draw
	DrawSize int64  // the pre-queue's size at the draw
}

// WaitingRoom gives fair, inventory-aware admission to the SKUs that have one. A
// customer joins a SKU's room; those who join before opens_at are shuffled once at
// opens_at (DrawOrder, with a seed from crypto/rand that is recorded); later joiners
// queue behind them in arrival order. Customers are admitted from the head of the line
// at the room's pace, never more admissions outstanding than units available; an
// admission is the right to make one reservation within its window.
//
// Changes (joins, the draw, admissions, their use) are durable before the method that
// made them returns, and are recorded for audit. Reads of a place are cheap: they never
// go through the SKU's serialisation point.
//
// Errors are *Error values with the codes named below; any other error is internal.
type WaitingRoom interface {
	// PutRoom creates (created true) or replaces the settings of the SKU's room, and
	// turns it on. It fails with CodeSKUNotFound and, for settings out of range,
	// CodeInvalidRequest.
	PutRoom(ctx context.Context, sku string, s RoomSettings) (r Room, created bool, err error)

	// DeleteRoom turns the SKU's room off: reservations no longer need an admission,
	// and joining fails. Places are kept, and a PutRoom turns it on again with them.
	// It fails with CodeWaitingRoomNotFound when the room is unknown or off.
	DeleteRoom(ctx context.Context, sku string) error

	// FindRoom returns the state of the SKU's room, or fails with
	// CodeWaitingRoomNotFound (no room, or off).
	FindRoom(ctx context.Context, sku string) (Room, error)

	// Join gives the customer a place in the SKU's room, or returns its place
	// (joined false) when it has one. It fails with CodeWaitingRoomNotFound,
	// CodeSaleNotOpen before the pre-queue opens, and CodeSoldOut while the room is
	// closed.
	Join(ctx context.Context, sku, customerID string) (p Place, joined bool, err error)

	// FindPlace returns the customer's place, cheaply. It fails with
	// CodeWaitingRoomNotFound and CodePlaceNotFound (the customer has not joined).
	FindPlace(ctx context.Context, sku, customerID string) (Place, error)

	// Claim takes the customer's current admission for one reservation of the SKU,
	// before the reservation is attempted. It returns false, nil when the SKU has no
	// room (or it is off): the reservation needs no admission. It fails with
	// CodeAdmissionRequired when the customer has no current admission (not admitted
	// yet, lapsed, already used, or claimed by a reservation under way). Every true
	// claim must be followed by Settle.
	Claim(ctx context.Context, sku, customerID string) (bool, error)

	// Settle ends a claim: used true when the reservation was made (the admission is
	// spent), false when it was refused (the admission can be claimed again while its
	// window lasts).
	Settle(ctx context.Context, sku, customerID string, used bool) error

	// Advance applies what is due in the SKU's room at the current time: the draw at
	// opens_at, lapsed admissions, closing when sold out and reopening, and admissions
	// at the room's pace. Implementations call it on their own timer; it may be called
	// at any time, from any node, without admitting faster than the pace.
	Advance(ctx context.Context, sku string) error
}

// RoomRecordType says what a RoomRecord records. Values are stored: never renumber.
type RoomRecordType uint8

// The records of a waiting room's audit log.
const (
	RoomPut      RoomRecordType = 1 // settings put (room on)
	RoomDeleted  RoomRecordType = 2 // room off
	RoomJoined   RoomRecordType = 3 // a customer joined; Ticket 0 in the pre-queue, else its place in line
	RoomDrawn    RoomRecordType = 4 // the draw: Seed, Ticket = size of the pre-queue
	RoomPlaced   RoomRecordType = 5 // one pre-queue customer's place (Ticket) in the draw
	RoomAdmitted RoomRecordType = 6 // a customer admitted until Until
	RoomUsed     RoomRecordType = 7 // an admission spent on a reservation
	RoomClosed   RoomRecordType = 8 // sold out: the room closed
	RoomReopened RoomRecordType = 9 // stock came back: the room reopened
)

// String returns the name of t.
func (t RoomRecordType) String() string {
	switch t {
	case RoomPut:
		return "room_put"
	case RoomDeleted:
		return "room_deleted"
	case RoomJoined:
		return "joined"
	case RoomDrawn:
		return "drawn"
	case RoomPlaced:
		return "placed"
	case RoomAdmitted:
		return "admitted"
	case RoomUsed:
		return "used"
	case RoomClosed:
		return "closed"
	case RoomReopened:
		return "reopened"
	}
	return "unknown"
}

// RoomRecord is one entry of the waiting rooms' audit log.
type RoomRecord struct {
	Seq        int64 // assigned by the log, increasing
	Type       RoomRecordType
	SKU        string
	Time       time.Time
	CustomerID string       // RoomJoined, RoomPlaced, RoomAdmitted, RoomUsed
	Ticket     int64        // RoomJoined, RoomPlaced; RoomDrawn: the pre-queue's size
	Until      time.Time    // RoomAdmitted
	Seed       []byte       // RoomDrawn
	Settings   RoomSettings // RoomPut
}

// RoomLog is the durable, ordered audit log of the waiting rooms (embedded mode: the
// SQLite ledger). The embedded WaitingRoom rebuilds its state from it at start.
type RoomLog interface {
	// AppendRoomRecords writes recs, in order, durably before it returns.
	AppendRoomRecords(ctx context.Context, recs []RoomRecord) error

	// ReadRoomRecords calls fn with every record of sku ("" for all), in order.
	ReadRoomRecords(ctx context.Context, sku string, fn func(RoomRecord) error) error
}

// SKUClosed reads the SKU's public view and whether the SKU is closed now (SKU.Closed):
// the state a join is judged by, which a room's SoldOut follows within an advance.
// The held units are in the SKU's full view only, read (under the SKU's lock, or by a
// script) when nothing is available.
func SKUClosed(ctx context.Context, inv Inventory, sku string) (Availability, bool, error) {
	av, err := inv.Availability(ctx, sku)
	if err != nil || av.Available > 0 {
		return av, false, err
	}
	s, err := inv.FindSKU(ctx, sku)
	if err != nil {
		return av, false, err
	}
	return av, s.Closed(), nil
}

// NewDrawSeed returns a fresh seed for a draw, from crypto/rand.
func NewDrawSeed() []byte { return randomBytes(DrawSeedLen) }

// DrawOrder returns the customers of a pre-queue, given in the order they joined, in
// the order of the draw seeded by seed: a Fisher-Yates shuffle driven by ChaCha8 (the
// C2SP chacha8rand generator) keyed with the seed, drawing each index by rejection so
// that every permutation is equally likely. It is pure: anyone with the seed and the
// join order can reproduce the draw. seed must be DrawSeedLen bytes.
func DrawOrder(seed []byte, joined []string) []string {
	var key [DrawSeedLen]byte
	copy(key[:], seed)
	src := mrand.NewChaCha8(key)
	out := append([]string(nil), joined...)
	for i := len(out) - 1; i > 0; i-- {
		j := uniformIndex(src, uint64(i)+1)
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// uniformIndex returns a uniform integer in [0, n) from src, n > 0: values below
// 2^64 mod n are rejected so that each remainder is equally likely.
func uniformIndex(src *mrand.ChaCha8, n uint64) uint64 {
	threshold := (math.MaxUint64 - n + 1) % n // 2^64 mod n
	for {
		if x := src.Uint64(); x >= threshold {
			return x % n
		}
	}
}
