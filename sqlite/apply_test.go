package sqlite_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
)

// mixedLog returns a journal in which reservations end in every way, some within a few
// events of their creation (often in the same batch) and some much later, with
// repeated confirmations (the first order reference sticks), revivals, and SKU
// settings put more than once.
func mixedLog() *revguardtest.EventLog {
	rng := rand.New(rand.NewPCG(1, 2))
	var log revguardtest.EventLog
	var open []revguard.Event // holds not ended yet
	for i := range 400 {
		if i%97 == 0 {
			log.PutSKU(fmt.Sprintf("sku-%d", i%3), int64(100+i))
		}
		open = append(open, log.Reserve(fmt.Sprintf("sku-%d", i%3), fmt.Sprintf("c-%d", rng.IntN(50)), 1+int64(i%2)))
		for len(open) > 0 && rng.IntN(3) > 0 {
			j := rng.IntN(len(open))
			if rng.IntN(4) == 0 {
				j = len(open) - 1 // the newest: likely in the same batch
			}
			r := open[j]
			open = append(open[:j], open[j+1:]...)
			switch rng.IntN(6) {
			case 0, 1:
				log.Change(revguard.EventConfirmed, r, fmt.Sprintf("order-%d", i), false)
				if rng.IntN(2) == 0 {
					log.Change(revguard.EventConfirmed, r, "ignored-second-ref", false)
				}
			case 2:
				log.Change(revguard.EventConfirmed, r, "", false)
			case 3:
				log.Change(revguard.EventReleased, r, "", false)
			case 4:
				log.Change(revguard.EventExpired, r, "", false)
			default:
				log.Change(revguard.EventExpired, r, "", false)
				log.Change(revguard.EventConfirmed, r, "revived", true)
			}
		}
	}
	return &log
}

// TestLedger_ApplyBatchSizes applies the same journal in batches of many sizes, each
// cut at other places (around the 64-row statements too), and checks that each gives
// the ledger that applying the events one by one gives: every field, and the seq of
// the last event of each reservation.
func TestLedger_ApplyBatchSizes(t *testing.T) {
	log := mixedLog()
	want := log.Expect()
	lastSeq := map[string]uint64{}
	for _, ev := range log.Events {
		if ev.ReservationID != "" {
			lastSeq[ev.ReservationID] = ev.Seq
		}
	}
	for _, size := range []int{7, 64, 65, 129, 500, len(log.Events)} {
		t.Run(fmt.Sprintf("batch=%d", size), func(t *testing.T) {
			l := sqlite.NewLedger(MustOpenDB(t))
			for i := 0; i < len(log.Events); i += size {
				revguardtest.MustApply(t, l, log.Events[i:min(i+size, len(log.Events))])
			}
			revguardtest.CheckReservations(t, revguardtest.AllOrders(t, l, revguard.OrderFilter{}), want)
			s, err := l.Scan(t.Context(), sqlite.ScanFilter{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for s.Next() {
				if id := s.Reservation().ID; s.Seq() != lastSeq[id] {
					t.Fatalf("%s: row seq %d, want %d (its last event)", id, s.Seq(), lastSeq[id])
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLedger_ApplyErrors checks that a batch that cannot be applied event by event
// fails whole, with an error naming the reservation, whichever statement it falls in.
func TestLedger_ApplyErrors(t *testing.T) {
	var log revguardtest.EventLog
	var rs []revguard.Event
	for i := range 100 {
		rs = append(rs, log.Reserve("shoe", fmt.Sprintf("c-%d", i), 1))
	}
	first := len(log.Events) // the ledger holds everything before
	more := func(n int) []revguard.Event {
		var out []revguard.Event
		for range n {
			out = append(out, log.Reserve("shoe", "x", 1))
		}
		return out
	}
	next := func(ev revguard.Event, after []revguard.Event) revguard.Event {
		ev.Seq = after[len(after)-1].Seq + 1
		return ev
	}
	tests := []struct {
		name  string
		batch func() []revguard.Event
		id    string
	}{
		{"ErrReservedTwice", func() []revguard.Event {
			b := more(3)
			return append(b, next(b[1], b))
		}, ""},
		{"ErrChangedBeforeReserved", func() []revguard.Event {
			b := more(70)
			ch := revguard.Event{Seq: b[0].Seq, Type: revguard.EventConfirmed, Time: b[0].Time, SKU: "shoe", ReservationID: b[69].ReservationID}
			b[0] = ch
			return b
		}, ""},
		{"ErrAlreadyInLedger", func() []revguard.Event {
			b := more(90) // the duplicate lands in the second 64-row insert
			dup := rs[5]
			dup.Seq, dup.Time = b[75].Seq, b[75].Time
			b[75] = dup
			return b
		}, rs[5].ReservationID},
		{"ErrNotInLedger", func() []revguard.Event {
			var b []revguard.Event
			for i, r := range rs[:80] {
				ev := revguard.Event{Seq: uint64(first + 1000 + i), Type: revguard.EventReleased, Time: revguard.Event{}.Time,
					SKU: r.SKU, ReservationID: r.ReservationID}
				if i == 70 {
					ev.ReservationID = "01UNKNOWN"
				}
				b = append(b, ev)
			}
			return b
		}, "01UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := sqlite.NewLedger(MustOpenDB(t))
			revguardtest.MustApply(t, l, log.Events[:first])
			before := revguardtest.AllOrders(t, l, revguard.OrderFilter{})
			batch := tt.batch()
			err := l.ApplyEvents(t.Context(), batch)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.id != "" && !strings.Contains(err.Error(), tt.id) {
				t.Errorf("error %q does not name %s", err, tt.id)
			}
			if n, err := l.LastApplied(t.Context()); err != nil || n != uint64(first) {
				t.Fatalf("LastApplied after a failed batch = %d, %v; want %d", n, err, first)
			}
			revguardtest.CheckReservations(t, revguardtest.AllOrders(t, l, revguard.OrderFilter{}), before)
		})
	}
}
