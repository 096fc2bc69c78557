package loadtest

// AsBaseline returns the reserve path of the sale r as a row of the baseline
// comparison, named name: how Revenue Guard in another mode (a fleet on Redis and
// PostgreSQL, say) did with the same scenario, next to the sale and the bare stores.
// Its checks are the sale's, ledger included.
func (r *Report) AsBaseline(name string) *BaselineReport {
	b := &BaselineReport{
		Store: name, Customers: r.Sale.Customers, Seconds: r.SaleSeconds,
		Throughput: r.ReserveThroughput, Reserved: r.Sale.Reserved, Checks: r.Checks,
	}
	for _, l := range r.Latency {
		if l.Op == opReserve {
			b.Latency, b.Operations = l, l.Count
		}
	}
	for _, o := range r.Outcomes {
		if o.Op == opReserve {
			b.Outcomes = append(b.Outcomes, o)
		}
	}
	if r.SKU != nil {
		b.Available = r.SKU.Available
	}
	return b
}
