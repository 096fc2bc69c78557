// Package loadtest is a flash-sale simulator for Revenue Guard: it drives a running
// deployment through the v1 HTTP API the way a drop's crowd does, measures it, and then
// checks what matters to a shop: no unit sold twice, no customer over the limit, no bot
// admitted, and the ledger equal to what was acknowledged.
//
// A [Runner] plays a [Scenario]: it creates the SKU and one session per customer, lets
// the customers arrive (all at the opening instant, on a ramp, or at a steady rate), and
// each human fires its reservation attempts at once (a double click beyond its limit
// included), then confirms, releases or abandons each hold. Bots send bad or replayed
// bot-check tokens. Every answer is recorded: latencies in HDR histograms, outcomes by
// status and code, and each acknowledged reservation with the server's own timestamps.
//
// The checks are computed from that record after the sale (see checks.go for their
// exact definitions) and from the server's answers: GET /v1/skus/{sku} sampled during the
// sale and at the end, and GET /v1/orders once the ledger caught up. A [Report] holds
// everything; Report.Failed lists the checks that broke.
//
// The baselines (baseline.go) drive what a shop would otherwise use, a Redis Lua script
// or a PostgreSQL transaction, with the same arrival pattern and concurrency.
package loadtest

import (
	"fmt"
	"math"
	"time"

	"github.com/revenueguard/revguard"
)

// Arrival is the pattern in which customers arrive.
type Arrival string

// The arrival patterns.
const (
	ArrivalBurst  Arrival = "burst"  // everyone at the opening instant
	ArrivalRamp   Arrival = "ramp"   // evenly spread over Scenario.Ramp
	ArrivalSteady Arrival = "steady" // Scenario.Rate customers per second
)

// Scenario is a flash sale to simulate. DefaultScenario is a meaningful sale of about
// twenty seconds.
type Scenario struct {
	SKU          string        `json:"sku"`              // "" picks a fresh one per run
	Customers    int           `json:"customers"`        // humans and bots
	Stock        int64         `json:"stock"`            // units for sale
	Limit        int64         `json:"limit"`            // per-customer limit
	HoldSeconds  int64         `json:"hold_seconds"`     // how long a hold lasts
	Quantity     int64         `json:"quantity"`         // units per reservation, 1 to Limit
	OverLimit    int           `json:"over_limit"`       // attempts each human fires beyond its limit
	Arrival      Arrival       `json:"arrival"`          // burst, ramp or steady
	Ramp         time.Duration `json:"ramp_ns"`          // ArrivalRamp: spread of the arrivals
	Rate         float64       `json:"rate"`             // ArrivalSteady: customers per second
	Bots         float64       `json:"bots"`             // share of customers that are bots
	Confirm      float64       `json:"confirm"`          // share of holds confirmed
	ConfirmDelay time.Duration `json:"confirm_delay_ns"` // from the hold to the confirm
	Release      float64       `json:"release"`          // share of holds released
	ReleaseDelay time.Duration `json:"release_delay_ns"` // from the hold to the release
	Duration     time.Duration `json:"duration_ns"`      // cap on the sale; later steps are skipped
	Connections  int           `json:"connections"`      // reservation attempts in flight at most (confirms and releases get a quarter more)
	Seed         int64         `json:"seed"`             // 0 picks one; the report shows it
}

// DefaultScenario returns the scenario that `revguard loadtest` runs with no flags.
func DefaultScenario() Scenario {
	return Scenario{
		Customers:    5_000,
		Stock:        500,
		Limit:        1,
		HoldSeconds:  5,
		Quantity:     1,
		OverLimit:    1,
		Arrival:      ArrivalRamp,
		Ramp:         12 * time.Second,
		Rate:         1000,
		Bots:         0.1,
		Confirm:      0.5,
		ConfirmDelay: time.Second,
		Release:      0.1,
		ReleaseDelay: 500 * time.Millisecond,
		Duration:     20 * time.Second,
		Connections:  64,
	}
}

// ParseArrival reads "burst", "ramp" or "steady".
func ParseArrival(s string) (Arrival, error) {
	switch a := Arrival(s); a {
	case ArrivalBurst, ArrivalRamp, ArrivalSteady:
		return a, nil
	}
	return "", fmt.Errorf("invalid arrival %q: want burst, ramp or steady", s)
}

// Validate reports the first setting out of range.
func (s Scenario) Validate() error {
	share := func(v float64) bool { return v >= 0 && v <= 1 && !math.IsNaN(v) }
	switch {
	case s.SKU != "" && !revguard.ValidSKUID(s.SKU):
		return fmt.Errorf("invalid sku %q: 1 to 128 characters from [A-Za-z0-9._:-]", s.SKU)
	case s.Customers < 1 || s.Customers > 10_000_000:
		return fmt.Errorf("customers must be between 1 and 10000000")
	case s.Stock < 0 || s.Stock > revguard.MaxStock:
		return fmt.Errorf("stock must be between 0 and %d", revguard.MaxStock)
	case s.Limit < 1 || s.Limit > revguard.MaxPerCustomerLimit:
		return fmt.Errorf("limit must be between 1 and %d", revguard.MaxPerCustomerLimit)
	case s.HoldSeconds < 1 || s.HoldSeconds > revguard.MaxHoldSeconds:
		return fmt.Errorf("hold seconds must be between 1 and %d", revguard.MaxHoldSeconds)
	case s.Quantity < 1 || s.Quantity > s.Limit:
		return fmt.Errorf("quantity must be between 1 and the limit (%d)", s.Limit)
	case s.OverLimit < 0 || s.OverLimit > 100:
		return fmt.Errorf("over-limit attempts must be between 0 and 100")
	case s.Attempts() > 1000:
		return fmt.Errorf("each customer would fire %d attempts: raise quantity or lower the limit", s.Attempts())
	case s.Arrival != ArrivalBurst && s.Arrival != ArrivalRamp && s.Arrival != ArrivalSteady:
		return fmt.Errorf("invalid arrival %q: want burst, ramp or steady", s.Arrival)
	case s.Arrival == ArrivalRamp && s.Ramp <= 0:
		return fmt.Errorf("ramp must be positive")
	case s.Arrival == ArrivalSteady && !(s.Rate > 0 && s.Rate <= 1e7):
		return fmt.Errorf("rate must be between 0 and 10000000 customers per second")
	case !share(s.Bots):
		return fmt.Errorf("bots must be a share between 0 and 1")
	case !share(s.Confirm) || !share(s.Release) || s.Confirm+s.Release > 1:
		return fmt.Errorf("confirm and release must be shares between 0 and 1 that add up to at most 1")
	case s.ConfirmDelay < 0 || s.ReleaseDelay < 0:
		return fmt.Errorf("confirm and release delays must not be negative")
	case s.Duration <= 0:
		return fmt.Errorf("duration must be positive")
	case s.Connections < 1 || s.Connections > 100_000:
		return fmt.Errorf("connections must be between 1 and 100000")
	}
	return nil
}

// Attempts is how many reservations each human fires at its arrival: enough to reach
// its limit, plus OverLimit more.
func (s Scenario) Attempts() int {
	n := (s.Limit + s.Quantity - 1) / s.Quantity
	return int(n) + s.OverLimit
}

// arrivals returns when each of n customers arrives, as an offset from the opening.
// Customers that would arrive after the duration are left out (steady arrivals at a low
// rate).
func (s Scenario) arrivals(n int) []time.Duration {
	at := make([]time.Duration, 0, n)
	for i := range n {
		var d time.Duration
		switch s.Arrival {
		case ArrivalRamp:
			d = time.Duration(float64(s.Ramp) * float64(i) / float64(n))
		case ArrivalSteady:
			d = time.Duration(float64(time.Second) * float64(i) / s.Rate)
		}
		if d >= s.Duration {
			break
		}
		at = append(at, d)
	}
	return at
}
