package loadtest

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkChecks measures the checks of a large sale, so that they stay cheap next to
// it: 100,000 customers, 10,000 holds, 190,000 sold-out refusals.
//
//	go test -run '^$' -bench Checks ./loadtest
func BenchmarkChecks(b *testing.B) {
	const customers, stock = 100_000, 10_000
	var holds []*hold
	var attempts []*attempt
	for i := range customers {
		c := cust(fmt.Sprintf("c%d", i))
		if i < stock {
			h := mkHold(c, fmt.Sprint(i), 1, i/10, []string{"confirmed", "held"}[i%2], 0) // all taken within 1 s
			holds = append(holds, h)
			attempts = append(attempts, won(h))
			continue
		}
		ms := 1000 + (i-stock)/100 // refused in the next second, before any hold expires
		attempts = append(attempts, soldOut(c, 1, ms, ms+50), soldOut(c, 1, ms, ms+50))
	}
	s := scenario(stock, 1)
	read := at(customers/10 + 60_000)
	b.ReportAllocs()
	for b.Loop() {
		an := newAnalysis(s, holds, attempts)
		for _, c := range []Check{an.checkOversell(), an.checkDemand(), an.checkLimit(), an.checkBots()} {
			if !c.OK {
				b.Fatalf("%s: %s", c.Name, c.Detail)
			}
		}
		if msg := compareLedger(holds, attempts, ledgerOf(holds, read), read); msg != "" {
			b.Fatal(msg)
		}
	}
	b.ReportMetric(float64(len(attempts)), "attempts/op")
}

// ledgerOf is the ledger a correct server shows for holds at server time at.
func ledgerOf(holds []*hold, at time.Time) []reservationJSON {
	items := make([]reservationJSON, len(holds))
	for i, h := range holds {
		items[i] = h.res
		items[i].Status = h.expected(at)[0]
	}
	return items
}
