package client

import "time"

// SetEventsIdle sets how long Events waits on a silent connection, until cleanup.
func SetEventsIdle(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := eventsIdle
	eventsIdle = d
	tb.Cleanup(func() { eventsIdle = old })
}
