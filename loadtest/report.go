package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/revenueguard/revguard"
)

// Report is the result of a run: what was played, how fast it was answered, what
// happened to the stock, and the checks.
type Report struct {
	Scenario          Scenario      `json:"scenario"`
	Targets           []string      `json:"targets"`
	Mode              string        `json:"mode,omitempty"` // set by the caller, e.g. "embedded"
	Started           time.Time     `json:"started"`
	SetupSeconds      float64       `json:"setup_seconds"` // creating the SKU's sessions
	SaleSeconds       float64       `json:"sale_seconds"`
	Requests          int64         `json:"requests"`            // reserve, confirm and release requests
	Throughput        float64       `json:"requests_per_second"` // Requests / SaleSeconds
	ReserveThroughput float64       `json:"reserves_per_second"`
	SoldOut           *SoldOutSplit `json:"sold_out,omitempty"` // nil when nothing was refused sold_out
	Latency           []Latency     `json:"latency"`
	Outcomes          []Outcome     `json:"outcomes"`
	Sale              SaleSummary   `json:"sale"`
	SKU               *SKUState     `json:"sku,omitempty"`    // the final read; nil when it failed
	Ledger            *LedgerState  `json:"ledger,omitempty"` // nil when it never caught up
	Checks            []Check       `json:"checks"`

	// Baselines are the stores a shop would otherwise use, driven with the same
	// scenario after the sale; the caller adds them.
	Baselines []*BaselineReport `json:"baselines,omitempty"`
}

// SoldOutSplit parts the reservations at the first sold_out refusal: before it they
// take the bot check and the serialisation point, and the holds wait for the disk; after
// it most are refused on the fast path.
type SoldOutSplit struct {
	AtSeconds    float64 `json:"at_seconds"` // from the opening
	Before       int64   `json:"before"`     // reserve answers before the first refusal
	BeforePerSec float64 `json:"before_per_second"`
	After        int64   `json:"after"` // from the first refusal on
	AfterPerSec  float64 `json:"after_per_second"`
}

// SaleSummary counts what happened to the customers and the units.
type SaleSummary struct {
	Customers  int   `json:"customers"` // who arrived within the duration
	Bots       int   `json:"bots"`
	Attempts   int   `json:"attempts"`   // reservations fired
	Holds      int   `json:"holds"`      // acknowledged with 201
	BotHolds   int   `json:"bot_holds"`  // of which by bots
	Demand     int64 `json:"demand"`     // units asked by attempts answered 201 or sold_out
	Reserved   int64 `json:"reserved"`   // units acknowledged
	Confirmed  int64 `json:"confirmed"`  // units confirmed
	Released   int64 `json:"released"`   // units released
	Expired    int64 `json:"expired"`    // units whose hold expired (known, or past its deadline)
	Held       int64 `json:"held"`       // units still held at the end
	SoldOut    int   `json:"sold_out"`   // attempts refused sold_out
	Unresolved int   `json:"unresolved"` // attempts whose outcome stayed unknown
}

// SKUState is the final read of the SKU.
type SKUState struct {
	Stock     int64 `json:"stock"`
	Available int64 `json:"available"`
	Held      int64 `json:"held"`
	Sold      int64 `json:"sold"`
}

// LedgerState is how the ledger caught up.
type LedgerState struct {
	Items           int     `json:"items"`
	CaughtUpSeconds float64 `json:"caught_up_seconds"`
	Reads           int     `json:"reads"`
}

// Failed returns the checks that failed.
func (r *Report) Failed() []Check {
	var f []Check
	for _, c := range r.Checks {
		if !c.OK {
			f = append(f, c)
		}
	}
	return f
}

// Err returns an error naming the failed checks of the sale and of the baselines, or
// nil.
func (r *Report) Err() error {
	f := r.Failed()
	for _, b := range r.Baselines {
		for _, c := range b.Checks {
			if !c.OK {
				c.Name = "baseline " + b.Store + " " + c.Name
				f = append(f, c)
			}
		}
	}
	if len(f) == 0 {
		return nil
	}
	names := make([]string, len(f))
	for i, c := range f {
		names[i] = c.Name
	}
	noun := "checks"
	if len(f) == 1 {
		noun = "check"
	}
	return fmt.Errorf("loadtest: %d %s failed: %s", len(f), noun, strings.Join(names, ", "))
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// summarizeSale counts the sale's units. A hold the customer left is counted expired
// when the ledger (caught up, and read last) says so or when the final read at server
// time at proves it, held otherwise.
func summarizeSale(an *analysis, at time.Time, ledger map[string]string) SaleSummary {
	var s SaleSummary
	seen := make(map[*customer]bool)
	for _, a := range an.attempts {
		if !seen[a.cust] {
			seen[a.cust] = true
			s.Customers++
			if a.cust.bot {
				s.Bots++
			}
		}
		s.Attempts++
		switch {
		case a.hold != nil:
			s.Demand += a.qty
		case a.code == string(revguard.CodeSoldOut):
			s.Demand += a.qty
			s.SoldOut++
		}
		if a.unresolved {
			s.Unresolved++
		}
	}
	for _, h := range an.holds {
		q := h.res.Quantity
		s.Holds++
		s.Reserved += q
		if h.cust.bot {
			s.BotHolds++
		}
		switch h.status {
		case string(revguard.StatusConfirmed):
			s.Confirmed += q
		case string(revguard.StatusReleased):
			s.Released += q
		case string(revguard.StatusExpired):
			s.Expired += q
		default:
			want := h.expected(at)
			if ledger[h.res.ID] == string(revguard.StatusExpired) || len(want) == 1 && want[0] == string(revguard.StatusExpired) {
				s.Expired += q
			} else {
				s.Held += q
			}
		}
	}
	return s
}

// WriteText writes the report for a human: the sale's, then the baselines' and a
// comparison.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	if len(r.Checks) > 0 {
		r.writeSale(&b)
	}
	for _, bl := range r.Baselines {
		b.WriteString("\n")
		if err := bl.WriteText(&b); err != nil {
			return err
		}
	}
	if len(r.Baselines) > 0 {
		r.writeComparison(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeComparison tabulates the reserve path of the sale and of each baseline.
func (r *Report) writeComparison(b *strings.Builder) {
	fmt.Fprintln(b, "\ncomparison of the reserve path (same arrivals and connections)")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\treserves/s\tp50 ms\tp99 ms\tp99.9 ms\toversell check\t")
	verdict := func(cs []Check) string {
		for _, c := range cs {
			if c.Name == CheckOversell {
				if c.OK {
					return "pass"
				}
				return "FAIL"
			}
		}
		return "-"
	}
	if len(r.Checks) > 0 {
		for _, l := range r.Latency {
			if l.Op == opReserve {
				name := "revguard"
				if r.Mode != "" {
					name += " " + r.Mode
				}
				fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%s\t\n", name, r.ReserveThroughput, l.P50, l.P99, l.P999, verdict(r.Checks))
			}
		}
	}
	for _, bl := range r.Baselines {
		l := bl.Latency
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%s\t\n", bl.Store, bl.Throughput, l.P50, l.P99, l.P999, verdict(bl.Checks))
	}
	tw.Flush()
}

// writeSale writes the sale's part of the report.
func (r *Report) writeSale(b *strings.Builder) {
	s := r.Scenario
	mode := ""
	if r.Mode != "" {
		mode = " (" + r.Mode + ")"
	}
	fmt.Fprintf(b, "revguard loadtest: sku %s on %s%s, seed %d\n", s.SKU, strings.Join(r.Targets, ", "), mode, s.Seed)
	arrival := string(s.Arrival)
	switch s.Arrival {
	case ArrivalRamp:
		arrival = "ramp over " + s.Ramp.String()
	case ArrivalSteady:
		arrival = fmt.Sprintf("steady %g/s", s.Rate)
	}
	fmt.Fprintf(b, "scenario: %d customers (%.0f%% bots), stock %d, limit %d, quantity %d, hold %ds, %s, %d connections\n",
		s.Customers, s.Bots*100, s.Stock, s.Limit, s.Quantity, s.HoldSeconds, arrival, s.Connections)
	fmt.Fprintf(b, "          confirm %.0f%% after %s, release %.0f%% after %s, %d attempts per buyer, duration cap %s\n",
		s.Confirm*100, s.ConfirmDelay, s.Release*100, s.ReleaseDelay, s.Attempts(), s.Duration)
	fmt.Fprintf(b, "sessions: %d issued before the sale opened, in %.1fs (%.0f/s); not part of the sale's figures\n",
		s.Customers, r.SetupSeconds, float64(s.Customers)/max(r.SetupSeconds, 1e-9))
	fmt.Fprintf(b, "sale: %.1fs, %d requests, %.0f requests/s (%.0f reserves/s)\n",
		r.SaleSeconds, r.Requests, r.Throughput, r.ReserveThroughput)
	if so := r.SoldOut; so != nil {
		fmt.Fprintf(b, "      first sold_out at %.1fs: %d reserves before it (%.0f/s), %d from it on (%.0f/s)\n",
			so.AtSeconds, so.Before, so.BeforePerSec, so.After, so.AfterPerSec)
	}
	fmt.Fprintln(b)

	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tcount\tmean\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, l := range r.Latency {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", l.Op, l.Count, l.Mean, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	tw.Flush()
	fmt.Fprintln(b, "\noutcomes")
	tw = tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, o := range r.Outcomes {
		who := "humans"
		switch {
		case o.Bot:
			who = "bots"
		case o.Op == opSession || o.Op == opSKU || o.Op == opOrders:
			who = "admin"
		}
		status := fmt.Sprint(o.Status)
		if o.Status == 0 {
			status = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s %s\t%d\n", o.Op, who, status, o.Code, o.Count)
	}
	tw.Flush()
	sa := r.Sale
	fmt.Fprintf(b, "\nunits: demand %d, reserved %d in %d holds (%d by bots): confirmed %d, released %d, expired %d, still held %d; %d sold-out refusals, %d attempts unresolved\n",
		sa.Demand, sa.Reserved, sa.Holds, sa.BotHolds, sa.Confirmed, sa.Released, sa.Expired, sa.Held, sa.SoldOut, sa.Unresolved)
	if k := r.SKU; k != nil {
		fmt.Fprintf(b, "sku at the end: stock %d, available %d, held %d, sold %d\n", k.Stock, k.Available, k.Held, k.Sold)
	}
	if l := r.Ledger; l != nil {
		fmt.Fprintf(b, "ledger: %d reservations, caught up in %.1fs\n", l.Items, l.CaughtUpSeconds)
	}
	fmt.Fprintln(b, "\nchecks")
	for _, c := range r.Checks {
		verdict := "PASS"
		switch {
		case !c.OK:
			verdict = "FAIL"
		case c.Skipped:
			verdict = "SKIP"
		}
		fmt.Fprintf(b, "  %s  %-16s %s: %s\n", verdict, c.Name, c.Title, c.Detail)
	}
	if f := r.Failed(); len(f) > 0 {
		for _, c := range f {
			fmt.Fprintf(b, "FAIL: check %s broke: %s\n", c.Name, c.Detail)
		}
	} else {
		fmt.Fprintf(b, "PASS: all %d checks\n", len(r.Checks))
	}
}
