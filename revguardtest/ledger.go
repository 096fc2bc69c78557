package revguardtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/revenueguard/revguard"
)

// TestLedger runs the conformance suite of revguard.Ledger against the ledgers made by
// open, each empty and used by one subtest.
func TestLedger(t *testing.T, open func(tb testing.TB) revguard.Ledger) {
	t.Run("ApplyEvents", func(t *testing.T) {
		t.Run("OK", func(t *testing.T) { testLedgerApply(t, open(t)) })
		t.Run("Empty", func(t *testing.T) { testLedgerApplyEmpty(t, open(t)) })
		t.Run("Idempotent", func(t *testing.T) { testLedgerIdempotent(t, open(t)) })
		t.Run("Revive", func(t *testing.T) { testLedgerRevive(t, open(t)) })
		t.Run("ErrAtomic", func(t *testing.T) { testLedgerAtomic(t, open(t)) })
	})
	t.Run("FindOrders", func(t *testing.T) {
		t.Run("Filters", func(t *testing.T) { testLedgerFilters(t, open(t)) })
		t.Run("Limit", func(t *testing.T) { testLedgerLimit(t, open(t)) })
		t.Run("Paging", func(t *testing.T) { testLedgerPaging(t, open(t)) })
		t.Run("PagingStableUnderInserts", func(t *testing.T) { testLedgerPagingInserts(t, open(t)) })
		t.Run("ErrInvalidCursor", func(t *testing.T) { testLedgerBadCursor(t, open(t)) })
		t.Run("Concurrent", func(t *testing.T) { testLedgerConcurrent(t, open(t)) })
	})
}

func checkLastApplied(tb testing.TB, l revguard.Ledger, want uint64) {
	tb.Helper()
	got, err := l.LastApplied(context.Background())
	if err != nil {
		tb.Fatalf("LastApplied: %v", err)
	}
	if got != want {
		tb.Fatalf("LastApplied = %d, want %d", got, want)
	}
}

func checkCode(tb testing.TB, what string, err error, want revguard.Code) {
	tb.Helper()
	if got := revguard.ErrorCode(err); got != want {
		tb.Fatalf("%s: error %v (code %q), want code %q", what, err, got, want)
	}
}

func testLedgerApply(t *testing.T, l revguard.Ledger) {
	checkLastApplied(t, l, 0)
	var log EventLog
	log.PutSKU("shoe", 10)
	a := log.Reserve("shoe", "alice", 1)
	b := log.Reserve("shoe", "bob", 2)
	c := log.Reserve("shoe", "carol", 1)
	d := log.Reserve("shoe", "dave", 3)
	log.Change(revguard.EventConfirmed, a, "order-1", false)
	log.Change(revguard.EventReleased, b, "", false)
	log.Change(revguard.EventExpired, c, "", false)
	log.Change(revguard.EventConfirmed, d, "", false)
	MustApply(t, l, log.Events)
	checkLastApplied(t, l, uint64(len(log.Events)))
	got := AllOrders(t, l, revguard.OrderFilter{})
	CheckReservations(t, got, log.Expect())
	if got[3].OrderRef != "" {
		t.Errorf("confirm without order_ref: OrderRef = %q, want none", got[3].OrderRef)
	}
}

func testLedgerApplyEmpty(t *testing.T, l revguard.Ledger) {
	if err := l.ApplyEvents(context.Background(), nil); err != nil {
		t.Fatalf("ApplyEvents(nil): %v", err)
	}
	checkLastApplied(t, l, 0)
}

func testLedgerIdempotent(t *testing.T, l revguard.Ledger) {
	var log EventLog
	var rs []revguard.Event
	for i := range 6 {
		rs = append(rs, log.Reserve("sku-"+fmt.Sprint(i%2), fmt.Sprintf("c%d", i), 1))
	}
	log.Change(revguard.EventConfirmed, rs[0], "first", false)
	log.Change(revguard.EventReleased, rs[1], "", false)
	log.Change(revguard.EventExpired, rs[2], "", false)
	log.Change(revguard.EventConfirmed, rs[3], "", false)
	ev := log.Events // seqs 1..10

	MustApply(t, l, ev[:5])
	MustApply(t, l, ev[:5]) // the same batch again, as after a crash before Consumed
	checkLastApplied(t, l, 5)
	MustApply(t, l, ev[2:8]) // overlaps the last batch
	checkLastApplied(t, l, 8)
	MustApply(t, l, ev[:8]) // entirely old
	checkLastApplied(t, l, 8)
	MustApply(t, l, ev[7:])
	MustApply(t, l, ev)
	checkLastApplied(t, l, 10)
	CheckReservations(t, AllOrders(t, l, revguard.OrderFilter{}), log.Expect())
}

func testLedgerRevive(t *testing.T, l revguard.Ledger) {
	var log EventLog
	r := log.Reserve("shoe", "alice", 2)
	log.Change(revguard.EventExpired, r, "", false)
	log.Change(revguard.EventConfirmed, r, "late-payment", true)
	MustApply(t, l, log.Events[:2])
	got := AllOrders(t, l, revguard.OrderFilter{})
	if len(got) != 1 || got[0].Status != revguard.StatusExpired {
		t.Fatalf("after expiry: %+v, want one expired reservation", got)
	}
	MustApply(t, l, log.Events[2:])
	CheckReservations(t, AllOrders(t, l, revguard.OrderFilter{}), log.Expect())
}

func testLedgerAtomic(t *testing.T, l revguard.Ledger) {
	var log EventLog
	a := log.Reserve("shoe", "alice", 1)
	MustApply(t, l, log.Events)
	log.Reserve("shoe", "bob", 1)
	log.Change(revguard.EventConfirmed, a, "x", false)
	// A change of a reservation the ledger never saw: the journal cannot produce it, and
	// the batch that holds it must fail whole.
	bad := revguard.Event{Seq: uint64(len(log.Events) + 1), Type: revguard.EventReleased, Time: LedgerTime,
		SKU: "shoe", ReservationID: ReservationID(99), CustomerID: "zed", Quantity: 1}
	if err := l.ApplyEvents(context.Background(), append(log.Events[1:3:3], bad)); err == nil {
		t.Fatal("ApplyEvents with a change of an unknown reservation: no error")
	}
	checkLastApplied(t, l, 1)
	got := AllOrders(t, l, revguard.OrderFilter{})
	if len(got) != 1 || got[0].ID != a.ReservationID || got[0].Status != revguard.StatusHeld {
		t.Fatalf("after a failed batch: %+v, want only %s, held (nothing of the batch)", got, a.ReservationID)
	}
	MustApply(t, l, log.Events[1:])
	CheckReservations(t, AllOrders(t, l, revguard.OrderFilter{}), log.Expect())
}

// fillLedger applies n reservations spread over 3 SKUs and 4 customers, some of them
// confirmed, released or expired, and returns what the ledger must hold.
func fillLedger(tb testing.TB, l revguard.Ledger, log *EventLog, n int) []revguard.Reservation {
	tb.Helper()
	start := len(log.Events)
	for i := range n {
		r := log.Reserve(fmt.Sprintf("sku-%d", i%3), fmt.Sprintf("cust-%d", i%4), int64(1+i%2))
		switch i % 5 {
		case 1:
			log.Change(revguard.EventConfirmed, r, fmt.Sprintf("order-%d", i), false)
		case 2:
			log.Change(revguard.EventReleased, r, "", false)
		case 3:
			log.Change(revguard.EventExpired, r, "", false)
		}
	}
	for i := start; i < len(log.Events); i += 256 {
		MustApply(tb, l, log.Events[i:min(i+256, len(log.Events))])
	}
	return log.Expect()
}

func filterOf(rs []revguard.Reservation, keep func(revguard.Reservation) bool) []revguard.Reservation {
	var out []revguard.Reservation
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func testLedgerFilters(t *testing.T, l revguard.Ledger) {
	var log EventLog
	all := fillLedger(t, l, &log, 60)
	tests := []struct {
		name string
		f    revguard.OrderFilter
		keep func(revguard.Reservation) bool
	}{
		{"All", revguard.OrderFilter{}, func(revguard.Reservation) bool { return true }},
		{"SKU", revguard.OrderFilter{SKU: "sku-1"}, func(r revguard.Reservation) bool { return r.SKU == "sku-1" }},
		{"Customer", revguard.OrderFilter{CustomerID: "cust-2"}, func(r revguard.Reservation) bool { return r.CustomerID == "cust-2" }},
		{"Status", revguard.OrderFilter{Status: revguard.StatusConfirmed}, func(r revguard.Reservation) bool { return r.Status == revguard.StatusConfirmed }},
		{"Combined", revguard.OrderFilter{SKU: "sku-0", CustomerID: "cust-0", Status: revguard.StatusHeld}, func(r revguard.Reservation) bool {
			return r.SKU == "sku-0" && r.CustomerID == "cust-0" && r.Status == revguard.StatusHeld
		}},
		{"NoMatch", revguard.OrderFilter{SKU: "no-such-sku"}, func(revguard.Reservation) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := filterOf(all, tt.keep)
			f := tt.f
			f.Limit = 7
			CheckReservations(t, AllOrders(t, l, f), want)
		})
	}
}

func testLedgerLimit(t *testing.T, l revguard.Ledger) {
	var log EventLog
	all := fillLedger(t, l, &log, revguard.DefaultOrderLimit+20)
	ctx := context.Background()
	p, err := l.FindOrders(ctx, revguard.OrderFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != revguard.DefaultOrderLimit || p.NextCursor == "" {
		t.Fatalf("default limit: %d items, next cursor %q; want %d and a cursor", len(p.Items), p.NextCursor, revguard.DefaultOrderLimit)
	}
	p, err = l.FindOrders(ctx, revguard.OrderFilter{Limit: revguard.MaxOrderLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != len(all) || p.NextCursor != "" {
		t.Fatalf("limit %d: %d items, next cursor %q; want %d and none", revguard.MaxOrderLimit, len(p.Items), p.NextCursor, len(all))
	}
	p, err = l.FindOrders(ctx, revguard.OrderFilter{Limit: len(all)})
	if err != nil || len(p.Items) != len(all) || p.NextCursor != "" {
		t.Fatalf("limit = count: %d items, cursor %q, err %v; want all and no cursor", len(p.Items), p.NextCursor, err)
	}
	for _, f := range []revguard.OrderFilter{
		{Limit: -1}, {Limit: revguard.MaxOrderLimit + 1}, {Status: "shipped"}, {Status: "HELD"},
	} {
		_, err := l.FindOrders(ctx, f)
		checkCode(t, fmt.Sprintf("FindOrders(%+v)", f), err, revguard.CodeInvalidRequest)
	}
}

func testLedgerPaging(t *testing.T, l revguard.Ledger) {
	var log EventLog
	all := fillLedger(t, l, &log, 25)
	for _, limit := range []int{1, 3, 10, 24, 25, 26} {
		CheckReservations(t, AllOrders(t, l, revguard.OrderFilter{Limit: limit}), all)
		rev := make([]revguard.Reservation, len(all))
		for i, r := range all {
			rev[len(all)-1-i] = r
		}
		CheckReservations(t, AllOrders(t, l, revguard.OrderFilter{Limit: limit, NewestFirst: true}), rev)
	}
}

func testLedgerPagingInserts(t *testing.T, l revguard.Ledger) {
	ctx := context.Background()
	var log EventLog // one log for both orders: seqs and ids keep growing
	for _, newest := range []bool{false, true} {
		t.Run(fmt.Sprintf("NewestFirst=%v", newest), func(t *testing.T) {
			firstNew := log.n + 1
			fillLedger(t, l, &log, 20)
			var before []string // the run's sku-1 reservations, there before paging began
			for _, r := range log.Expect() {
				if r.SKU == "sku-1" && r.ID >= ReservationID(firstNew) {
					before = append(before, r.ID)
				}
			}
			f := revguard.OrderFilter{SKU: "sku-1", Limit: 3, NewestFirst: newest}
			seen := map[string]int{}
			for pages := 0; ; pages++ {
				p, err := l.FindOrders(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range p.Items {
					seen[r.ID]++
				}
				// Between pages: a new reservation (a newer id) and a change of it.
				from := len(log.Events)
				r := log.Reserve("sku-1", "newcomer", 1)
				log.Change(revguard.EventConfirmed, r, "", false)
				MustApply(t, l, log.Events[from:])
				if p.NextCursor == "" {
					break
				}
				if pages > 1000 {
					t.Fatal("paging does not end")
				}
				f.Cursor = p.NextCursor
			}
			for _, id := range before {
				if seen[id] != 1 {
					t.Errorf("%s seen %d times, want once", id, seen[id])
				}
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("%s seen %d times", id, n)
				}
			}
		})
	}
}

func testLedgerBadCursor(t *testing.T, l revguard.Ledger) {
	var log EventLog
	fillLedger(t, l, &log, 12)
	ctx := context.Background()
	f := revguard.OrderFilter{SKU: "sku-0", Limit: 1}
	p, err := l.FindOrders(ctx, f)
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: cursor %q, err %v", p.NextCursor, err)
	}
	good := p.NextCursor
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name   string
		f      revguard.OrderFilter
		cursor string
	}{
		{"Garbage", f, "not a cursor!"},
		{"Base64Junk", f, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"Truncated", f, good[:len(good)/2]},
		{"Extended", f, good + "AAAA"},
		{"FlippedFirst", f, flip(good, 0)},
		{"FlippedMiddle", f, flip(good, len(good)/2)},
		{"FlippedLast", f, flip(good, len(good)-1)},
		{"Huge", f, strings.Repeat("A", 1<<16)},
		{"OtherSKU", revguard.OrderFilter{SKU: "sku-1", Limit: 1}, good},
		{"OtherCustomer", revguard.OrderFilter{SKU: "sku-0", CustomerID: "cust-0", Limit: 1}, good},
		{"OtherStatus", revguard.OrderFilter{SKU: "sku-0", Status: revguard.StatusHeld, Limit: 1}, good},
		{"OtherOrder", revguard.OrderFilter{SKU: "sku-0", NewestFirst: true, Limit: 1}, good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f.Cursor = tt.cursor
			_, err := l.FindOrders(ctx, tt.f)
			checkCode(t, "FindOrders with a bad cursor", err, revguard.CodeInvalidRequest)
		})
	}
	t.Run("OtherLimitOK", func(t *testing.T) {
		// The limit may change from page to page; the cursor stays valid.
		if _, err := l.FindOrders(ctx, revguard.OrderFilter{SKU: "sku-0", Limit: 50, Cursor: good}); err != nil {
			t.Fatalf("cursor with another limit: %v", err)
		}
	})
}

func testLedgerConcurrent(t *testing.T, l revguard.Ledger) {
	var log EventLog
	const n = 200
	for range n {
		r := log.Reserve("hot", "c", 1)
		log.Change(revguard.EventConfirmed, r, "", false)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 3 { // readers, paging while the writer applies
		wg.Go(func() {
			for ctx.Err() == nil {
				f := revguard.OrderFilter{SKU: "hot", Limit: 17}
				seen := map[string]bool{}
				for {
					p, err := l.FindOrders(ctx, f)
					if err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
					for _, r := range p.Items {
						if seen[r.ID] {
							errs <- fmt.Errorf("%s seen twice in one paging", r.ID)
							return
						}
						seen[r.ID] = true
					}
					if p.NextCursor == "" {
						break
					}
					f.Cursor = p.NextCursor
				}
			}
		})
	}
	for i := 0; i < len(log.Events); i += 16 {
		MustApply(t, l, log.Events[i:min(i+16, len(log.Events))])
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	CheckReservations(t, AllOrders(t, l, revguard.OrderFilter{}), log.Expect())
}
