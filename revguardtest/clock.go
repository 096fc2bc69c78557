package revguardtest

import (
	"sync/atomic"
	"time"
)

// Clock is a settable fake clock, safe for concurrent use. Pass its Now method as an
// implementation's clock; Advance moves it forward.
type Clock struct {
	ns atomic.Int64 // Unix nanoseconds
}

// ClockStart is where NewClock(time.Time{}) starts: 2026-11-27T10:00:00Z.
var ClockStart = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// NewClock returns a clock at t, or at ClockStart when t is zero.
func NewClock(t time.Time) *Clock {
	if t.IsZero() {
		t = ClockStart
	}
	c := &Clock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time, in UTC.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }
