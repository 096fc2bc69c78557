package redis

import (
	"fmt"
	"strconv"
	"time"

	"github.com/revenueguard/revguard"
)

// DecodeEvent decodes the fields of an outbox stream entry, as the scripts write them
// (lua/lib.lua, emit), into an Event. Reservation events carry the reservation's whole
// state: CreatedAt and ExpiresAt are set on each, Time is the change's. It fails on
// anything else: an entry it cannot decode is never applied, nor acknowledged.
func DecodeEvent(fields map[string]any) (revguard.Event, error) {
	var err error
	str := func(name string) string {
		s, ok := fields[name].(string)
		if !ok && err == nil {
			err = fmt.Errorf("field %q missing", name)
		}
		return s
	}
	integer := func(name string, lo, hi int64) int64 {
		s := str(name)
		n, perr := strconv.ParseInt(s, 10, 64)
		if (perr != nil || n < lo || n > hi) && err == nil {
			err = fmt.Errorf("field %q: bad value %q", name, s)
		}
		return n
	}
	at := func(name string, zeroOK bool) time.Time {
		s := str(name)
		t, ok := parseTime(s)
		if (!ok || (t.IsZero() && !zeroOK)) && err == nil {
			err = fmt.Errorf("field %q: bad time %q", name, s)
		}
		return t
	}

	var e revguard.Event
	seq, perr := strconv.ParseUint(str("seq"), 10, 64)
	if perr != nil || seq == 0 {
		return revguard.Event{}, fmt.Errorf("redis: outbox entry: bad seq %q", fields["seq"])
	}
	e.Seq = seq
	e.Type = revguard.EventType(integer("type", int64(revguard.EventSKUPut), int64(revguard.EventExpired)))
	e.Time = at("time", false)
	e.SKU = str("sku")
	if err == nil && !revguard.ValidSKUID(e.SKU) {
		err = fmt.Errorf("bad SKU id %q", e.SKU)
	}
	if err != nil {
		return revguard.Event{}, fmt.Errorf("redis: outbox entry %d: %w", seq, err)
	}
	if e.Type == revguard.EventSKUPut {
		e.Stock = integer("stock", 0, revguard.MaxStock)
		e.PerCustomerLimit = integer("limit", 1, revguard.MaxPerCustomerLimit)
		e.HoldSeconds = integer("hold", 1, revguard.MaxHoldSeconds)
		e.OpensAt = at("opens", true)
	} else {
		e.ReservationID = str("id")
		if _, ok := ParseID(e.ReservationID, MaxShards); !ok && err == nil {
			err = fmt.Errorf("bad reservation id %q", e.ReservationID)
		}
		e.CustomerID = str("cust")
		e.Quantity = integer("qty", 1, revguard.MaxPerCustomerLimit)
		e.CreatedAt = at("created", false)
		e.ExpiresAt = at("expires", false)
		e.IdempotencyKey = str("idem")
		e.OrderRef = str("ref")
		switch str("revived") {
		case "0":
		case "1":
			e.Revived = true
		default:
			if err == nil {
				err = fmt.Errorf("field \"revived\": bad value %q", fields["revived"])
			}
		}
		if err == nil && (e.CustomerID == "" || e.Revived && e.Type != revguard.EventConfirmed) {
			err = fmt.Errorf("inconsistent reservation event %+v", e)
		}
	}
	if err != nil {
		return revguard.Event{}, fmt.Errorf("redis: outbox entry %d: %w", seq, err)
	}
	return e, nil
}
