package revguardtest

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Clock is a settable fake clock, safe for concurrent use. Pass its Now method as an
// implementation's clock; Advance moves it forward. In stepping mode (SetStep) every
// read moves it forward too.
type Clock struct {
	ns   atomic.Int64 // Unix nanoseconds
	step atomic.Int64 // nanoseconds added by each Now; 0: none
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

// Now returns the clock's time, in UTC. In stepping mode it then moves the clock
// forward by the step and yields the processor, so that two reads of one call (say,
// one before a SKU's serialisation point and one at it) see different times, and
// other goroutines likely run in between.
func (c *Clock) Now() time.Time {
	step := c.step.Load()
	if step == 0 {
		return time.Unix(0, c.ns.Load()).UTC()
	}
	t := time.Unix(0, c.ns.Add(step)-step).UTC()
	runtime.Gosched()
	return t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// SetStep turns the stepping mode on, with every Now moving the clock forward by d
// after reading it, or off with d == 0.
func (c *Clock) SetStep(d time.Duration) { c.step.Store(int64(d)) }
