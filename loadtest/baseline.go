package loadtest

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/revenueguard/revguard"
)

// BaselineStore is what a shop would otherwise use to take units of one SKU, driven
// directly rather than through Revenue Guard: no HTTP, no sessions, no bot check, no
// holds that expire. Each implementation keeps its data under its own prefix and
// removes it in Close.
type BaselineStore interface {
	// Name is the store's name in reports: "redis-lua", "postgres".
	Name() string
	// Setup creates the SKU with stock units available and no reservation.
	Setup(ctx context.Context, stock, limit int64) error
	// Reserve takes qty units for customerID in one atomic step. It returns "" when the
	// units were taken, CodeSoldOut when fewer than qty are available, and
	// CodeLimitExceeded when the customer's units would pass the limit.
	Reserve(ctx context.Context, customerID string, qty int64) (revguard.Code, error)
	// Audit returns what the store holds: the units still available, and the units
	// reserved by each customer according to its reservation records.
	Audit(ctx context.Context) (available int64, reserved map[string]int64, err error)
	// Close removes everything Setup created and releases the connections.
	Close(ctx context.Context) error
}

// BaselineRunner drives a BaselineStore with a Scenario's humans: the same arrival
// pattern, attempts per customer and connections as the sale.
type BaselineRunner struct {
	Scenario Scenario
	Store    BaselineStore
	Progress io.Writer // live status line; nil for none
	Now      func() time.Time
}

// BaselineReport is the result of a baseline run.
type BaselineReport struct {
	Store      string    `json:"store"`
	Customers  int       `json:"customers"`
	Seconds    float64   `json:"seconds"`
	Operations int64     `json:"operations"`
	Throughput float64   `json:"operations_per_second"`
	Latency    Latency   `json:"latency"`
	Outcomes   []Outcome `json:"outcomes"`
	Reserved   int64     `json:"reserved"`
	Available  int64     `json:"available"` // as stored at the end
	Checks     []Check   `json:"checks"`
}

// Err returns an error naming the failed checks, or nil.
func (b *BaselineReport) Err() error {
	r := Report{Checks: b.Checks}
	if err := r.Err(); err != nil {
		return fmt.Errorf("baseline %s: %w", b.Store, err)
	}
	return nil
}

// Run sets the store up, plays the sale's reservations against it, audits it, and
// closes it.
func (b *BaselineRunner) Run(ctx context.Context) (rep *BaselineReport, err error) {
	s := b.Scenario
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	now := b.Now
	if now == nil {
		now = time.Now
	}
	store := b.Store
	if err := store.Setup(ctx, s.Stock, s.Limit); err != nil {
		return nil, fmt.Errorf("baseline %s: setup: %w", store.Name(), err)
	}
	defer func() {
		// Clean up even when ctx is done, within a bound.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if cerr := store.Close(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("baseline %s: clean up: %w", store.Name(), cerr)
		}
	}()

	humans := s.Customers - int(math.Round(s.Bots*float64(s.Customers)))
	at := s.arrivals(humans)
	hist := newHist()
	outcomes := make(map[string]int64)
	type ack struct {
		cust string
		qty  int64
	}
	var (
		mu         sync.Mutex // guards hist, outcomes, acks, demand, unresolved
		acks       []ack
		demand     int64
		unresolved int64
	)
	sem := make(chan struct{}, s.Connections)
	start := now()
	deadline := start.Add(s.Duration)
	stop := make(chan struct{})
	var wg, prog sync.WaitGroup
	// The progress goroutine is started here and exits when stop is closed.
	prog.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			mu.Lock()
			n, taken := hist.TotalCount(), int64(len(acks))
			mu.Unlock()
			if b.Progress != nil {
				fmt.Fprintf(b.Progress, "\r\x1b[Kbaseline %s %4.1fs  %d operations  %d reserved", store.Name(), now().Sub(start).Seconds(), n, taken)
			}
		}
	})
	for i, arrival := range at {
		id := fmt.Sprintf("lt-baseline-%07d", i)
		// Each customer goroutine is started here and exits after its attempts.
		wg.Go(func() {
			if !sleepCtx(ctx, time.Until(start.Add(arrival))) || !now().Before(deadline) {
				return
			}
			var aw sync.WaitGroup
			for range s.Attempts() {
				aw.Go(func() {
					sem <- struct{}{}
					t0 := now()
					code, err := store.Reserve(ctx, id, s.Quantity)
					d := now().Sub(t0)
					<-sem
					mu.Lock()
					defer mu.Unlock()
					_ = hist.RecordValue(min(max(d.Microseconds(), histMin), histMax))
					switch {
					case err != nil:
						outcomes["error"]++
						unresolved += s.Quantity
					case code == "":
						outcomes["ok"]++
						acks = append(acks, ack{id, s.Quantity})
						demand += s.Quantity
					default:
						outcomes[string(code)]++
						if code == revguard.CodeSoldOut {
							demand += s.Quantity
						}
					}
				})
			}
			aw.Wait()
		})
	}
	wg.Wait()
	elapsed := now().Sub(start)
	close(stop)
	prog.Wait()
	if b.Progress != nil {
		fmt.Fprint(b.Progress, "\r\x1b[K")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("baseline %s: interrupted: %w", store.Name(), err)
	}

	available, stored, err := store.Audit(ctx)
	if err != nil {
		return nil, fmt.Errorf("baseline %s: audit: %w", store.Name(), err)
	}
	acked := make(map[string]int64)
	var taken int64
	for _, a := range acks {
		acked[a.cust] += a.qty
		taken += a.qty
	}
	rep = &BaselineReport{
		Store: store.Name(), Customers: len(at), Seconds: elapsed.Seconds(), Operations: hist.TotalCount(),
		Latency: summarize(opReserve, hist), Reserved: taken, Available: available,
	}
	rep.Throughput = float64(rep.Operations) / rep.Seconds
	for code, n := range outcomes {
		rep.Outcomes = append(rep.Outcomes, Outcome{Op: opReserve, Code: code, Count: n})
	}
	slices.SortFunc(rep.Outcomes, func(a, b Outcome) int { return int(b.Count - a.Count) })
	rep.Checks = auditBaseline(s, taken, demand, unresolved, acked, available, stored)
	return rep, nil
}

// auditBaseline checks a baseline run: the acknowledged units never exceed the stock,
// and the store agrees (available + reserved records == stock, the records equal the
// acknowledged reservations per customer); no customer over the limit; and, as nothing
// comes back in a baseline, reserved == min(demand, stock - stock mod quantity).
func auditBaseline(s Scenario, taken, demand, unresolved int64, acked map[string]int64, available int64, stored map[string]int64) []Check {
	var storedTotal int64
	for _, n := range stored {
		storedTotal += n
	}
	oversell := pass(CheckOversell, "%d of %d units reserved, store consistent", taken, s.Stock)
	switch {
	case taken > s.Stock:
		oversell = fail(CheckOversell, "%d units acknowledged: the stock is %d", taken, s.Stock)
	case available < 0 || available+storedTotal != s.Stock:
		oversell = fail(CheckOversell, "the store has %d available and %d reserved: the stock is %d", available, storedTotal, s.Stock)
	case unresolved == 0 && len(stored) != len(acked):
		oversell = fail(CheckOversell, "the store records reservations of %d customers, %d were acknowledged", len(stored), len(acked))
	case unresolved == 0:
		for c, n := range acked {
			if stored[c] != n {
				oversell = fail(CheckOversell, "the store records %d units for %s, %d were acknowledged", stored[c], c, n)
				break
			}
		}
	}
	limit := pass(CheckLimit, "%d customers with units, none over %d", len(stored), s.Limit)
	for c, n := range stored {
		if n > s.Limit || acked[c] > s.Limit {
			limit = fail(CheckLimit, "%s has %d units: the limit is %d", c, max(n, acked[c]), s.Limit)
			break
		}
	}
	want := min(demand, s.Stock-s.Stock%s.Quantity)
	demandCheck := pass(CheckDemand, "reserved %d units = min(demand %d, stock %d)", taken, demand, s.Stock)
	switch {
	case unresolved > 0:
		demandCheck = skip(CheckDemand, "%d units of attempts that failed: cannot be counted", unresolved)
	case taken != want:
		demandCheck = fail(CheckDemand, "reserved %d units, want min(demand %d, stock %d) = %d", taken, demand, s.Stock, want)
	}
	return []Check{oversell, demandCheck, limit}
}

// WriteText writes the baseline report for a human.
func (b *BaselineReport) WriteText(w io.Writer) error {
	l := b.Latency
	_, err := fmt.Fprintf(w, "baseline %s: %d customers, %d operations in %.1fs, %.0f/s, p50 %.2fms p99 %.2fms p99.9 %.2fms; reserved %d, %d left\n",
		b.Store, b.Customers, b.Operations, b.Seconds, b.Throughput, l.P50, l.P99, l.P999, b.Reserved, b.Available)
	if err != nil {
		return err
	}
	for _, c := range b.Checks {
		verdict := "PASS"
		switch {
		case !c.OK:
			verdict = "FAIL"
		case c.Skipped:
			verdict = "SKIP"
		}
		if _, err := fmt.Fprintf(w, "  %s  %-16s %s\n", verdict, c.Name, c.Detail); err != nil {
			return err
		}
	}
	for _, c := range b.Checks {
		if !c.OK {
			if _, err := fmt.Fprintf(w, "FAIL: baseline %s check %s broke: %s\n", b.Store, c.Name, c.Detail); err != nil {
				return err
			}
		}
	}
	return nil
}
