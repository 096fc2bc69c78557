package loadtest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard/loadtest"
)

func TestScenarioValidate(t *testing.T) {
	if err := loadtest.DefaultScenario().Validate(); err != nil {
		t.Fatalf("DefaultScenario().Validate() = %v", err)
	}
	for _, tc := range []struct {
		name  string
		tweak func(*loadtest.Scenario)
		want  string // in the error; "" for valid
	}{
		{"OKSteady", func(s *loadtest.Scenario) { s.Arrival = loadtest.ArrivalSteady; s.Rate = 50 }, ""},
		{"OKBurstNoShares", func(s *loadtest.Scenario) { s.Arrival = "burst"; s.Bots, s.Confirm, s.Release = 0, 0, 0 }, ""},
		{"ErrSKU", func(s *loadtest.Scenario) { s.SKU = "no spaces" }, "invalid sku"},
		{"ErrCustomers", func(s *loadtest.Scenario) { s.Customers = 0 }, "customers"},
		{"ErrStock", func(s *loadtest.Scenario) { s.Stock = -1 }, "stock"},
		{"ErrLimit", func(s *loadtest.Scenario) { s.Limit = 0 }, "limit"},
		{"ErrHold", func(s *loadtest.Scenario) { s.HoldSeconds = 86_401 }, "hold seconds"},
		{"ErrQuantityOverLimit", func(s *loadtest.Scenario) { s.Quantity = 2 }, "quantity"},
		{"ErrTooManyAttempts", func(s *loadtest.Scenario) { s.Limit = 5000 }, "attempts"},
		{"ErrArrival", func(s *loadtest.Scenario) { s.Arrival = "wave" }, "invalid arrival"},
		{"ErrRamp", func(s *loadtest.Scenario) { s.Ramp = 0 }, "ramp"},
		{"ErrRate", func(s *loadtest.Scenario) { s.Arrival = loadtest.ArrivalSteady; s.Rate = 0 }, "rate"},
		{"ErrBots", func(s *loadtest.Scenario) { s.Bots = 1.5 }, "bots"},
		{"ErrShares", func(s *loadtest.Scenario) { s.Confirm, s.Release = 0.7, 0.4 }, "add up to at most 1"},
		{"ErrDelay", func(s *loadtest.Scenario) { s.ConfirmDelay = -time.Second }, "delays"},
		{"ErrDuration", func(s *loadtest.Scenario) { s.Duration = 0 }, "duration"},
		{"ErrConnections", func(s *loadtest.Scenario) { s.Connections = 0 }, "connections"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := loadtest.DefaultScenario()
			tc.tweak(&s)
			err := s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestParseArrival(t *testing.T) {
	for _, s := range []string{"burst", "ramp", "steady"} {
		if a, err := loadtest.ParseArrival(s); err != nil || string(a) != s {
			t.Errorf("ParseArrival(%q) = %q, %v", s, a, err)
		}
	}
	for _, s := range []string{"", "Burst", "wave"} {
		if _, err := loadtest.ParseArrival(s); err == nil {
			t.Errorf("ParseArrival(%q) succeeded", s)
		}
	}
}

// TestRunnerSteadyArrivals checks that a steady rate spreads the customers and that
// those who would arrive after the duration never come.
func TestRunnerSteadyArrivals(t *testing.T) {
	s := smallScenario()
	s.Arrival, s.Rate, s.Duration = loadtest.ArrivalSteady, 20, 2500*time.Millisecond
	s.Stock, s.Bots = 1000, 0
	rep, text := mustRun(t, &fakeShop{}, s)
	if err := rep.Err(); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	// 20 customers per second for 2.5 s: 50 are due, one hold each. On a loaded
	// machine the last few may be sent after the cap, and then never are (spread out,
	// a stall of 100 ms near the end costs two).
	if c := rep.Sale.Customers; c > 50 || c < 40 || rep.Sale.Holds != c {
		t.Errorf("customers %d, holds %d, want 40 to 50, one hold each\n%s", rep.Sale.Customers, rep.Sale.Holds, text)
	}
	if rep.SaleSeconds < 2.45 {
		t.Errorf("the sale took %.2fs, want about 2.5s", rep.SaleSeconds)
	}
}
