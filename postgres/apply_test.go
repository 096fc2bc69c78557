package postgres_test

import (
	"context"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/revguardtest"
)

// outboxLog returns a random journal of n reservations on a few SKUs, with every change
// a reservation can go through (confirmed, released, expired, revived after expiry) and
// SKU puts among them, as the Redis outbox makes it: each seq is shardSeq<<8 | shard,
// and every reservation event carries the reservation's CreatedAt and ExpiresAt. It
// returns the reservations that applying it must leave.
func outboxLog(rng *rand.Rand, n int) ([]revguard.Event, []revguard.Reservation) {
	var log revguardtest.EventLog
	skus := []string{"shoe", "hat", "coat", "sock", "scarf"}
	var held, expired []revguard.Event
	for len(held)+len(expired) > 0 || n > 0 {
		switch k := rng.IntN(10); {
		case k == 0:
			log.PutSKU(skus[rng.IntN(len(skus))], int64(rng.IntN(100)))
		case k < 5 && n > 0:
			n--
			held = append(held, log.Reserve(skus[rng.IntN(len(skus))], fmt.Sprintf("c%d", rng.IntN(7)), 1+int64(rng.IntN(3))))
		case len(held) > 0:
			i := rng.IntN(len(held))
			r := held[i]
			held = append(held[:i], held[i+1:]...)
			switch rng.IntN(4) {
			case 0:
				log.Change(revguard.EventConfirmed, r, fmt.Sprintf("order-%d", rng.IntN(1000)), false)
			case 1:
				log.Change(revguard.EventConfirmed, r, "", false)
			case 2:
				log.Change(revguard.EventReleased, r, "", false)
			default:
				log.Change(revguard.EventExpired, r, "", false)
				expired = append(expired, r)
			}
		case len(expired) > 0:
			r := expired[0]
			expired = expired[1:]
			log.Change(revguard.EventConfirmed, r, "late", true)
		}
	}
	created := map[string]revguard.Event{}
	events := log.Events
	for i := range events {
		ev := &events[i]
		if ev.Type == revguard.EventReserved {
			created[ev.ReservationID] = *ev
		}
		if ev.ReservationID != "" {
			c := created[ev.ReservationID]
			ev.CreatedAt, ev.ExpiresAt = c.Time, c.ExpiresAt
		}
		ev.Seq = uint64(i+1)<<8 | uint64(crc32.ChecksumIEEE([]byte(ev.SKU))%16)
	}
	return events, log.Expect()
}

// dump returns every row of table, ordered by order.
func dump(tb testing.TB, conn *pgx.Conn, table, order string) [][]any {
	tb.Helper()
	rows, err := conn.Query(tb.Context(), `SELECT * FROM `+table+` ORDER BY `+order)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// checkSameTables fails the test unless schemas a and b hold the same ledger rows.
func checkSameTables(t *testing.T, a, b string) {
	t.Helper()
	ca, cb := MustConnect(t, a), MustConnect(t, b)
	for _, tab := range []struct{ name, order string }{
		{"reservations", "id"}, {"skus", "id"}, {"sku_history", "sku, seq"},
	} {
		da, db := dump(t, ca, tab.name, tab.order), dump(t, cb, tab.name, tab.order)
		if len(da) == 0 {
			t.Fatalf("%s: empty", tab.name)
		}
		if len(da) != len(db) {
			t.Fatalf("%s: %d rows in order, %d shuffled", tab.name, len(da), len(db))
		}
		for i := range da {
			if !reflect.DeepEqual(da[i], db[i]) {
				t.Errorf("%s row %d: in order %v, shuffled %v", tab.name, i, da[i], db[i])
			}
		}
	}
}

// TestLedger_OrderIndependence applies a random outbox log in order, and again in
// shuffled, overlapping and repeated batches by several writers at once: both ledgers
// must hold exactly the same rows.
func TestLedger_OrderIndependence(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	events, want := outboxLog(rng, 400)

	inOrder := MustCreateSchema(t)
	ordered := postgres.NewLedger(MustOpenDBIn(t, inOrder))
	for i := 0; i < len(events); {
		n := min(1+rng.IntN(100), len(events)-i)
		revguardtest.MustApply(t, ordered, events[i:i+n])
		i += n
	}
	revguardtest.CheckReservations(t, revguardtest.AllOrders(t, ordered, revguard.OrderFilter{Limit: 1000}), want)

	// The same events, shuffled, cut into batches, with repeats: single events of other
	// batches, and whole batches again.
	shuffled := append([]revguard.Event(nil), events...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var batches [][]revguard.Event
	for i := 0; i < len(shuffled); {
		n := min(1+rng.IntN(64), len(shuffled)-i)
		b := append([]revguard.Event(nil), shuffled[i:i+n]...)
		for range rng.IntN(4) {
			b = append(b, events[rng.IntN(len(events))])
		}
		batches = append(batches, b)
		if rng.IntN(5) == 0 {
			batches = append(batches, b)
		}
		i += n
	}
	rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })

	outOfOrder := MustCreateSchema(t)
	l := postgres.NewLedger(MustOpenDBIn(t, outOfOrder))
	work := make(chan []revguard.Event)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 { // writers: each ends when work is closed, or at its first error
		wg.Go(func() {
			for b := range work {
				if err := l.ApplyEvents(context.Background(), b); err != nil {
					errs <- err
					for range work {
					}
					return
				}
			}
		})
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("ApplyEvents: %v", err)
	}
	checkSameTables(t, inOrder, outOfOrder)
	a, errA := ordered.LastApplied(t.Context())
	b, errB := l.LastApplied(t.Context())
	if errA != nil || errB != nil || a != b || a != events[len(events)-1].Seq {
		t.Fatalf("LastApplied: in order %d (%v), shuffled %d (%v), want %d", a, errA, b, errB, events[len(events)-1].Seq)
	}
}

// TestLedger_ApplyEvents covers what the conformance suite cannot: events that arrive
// before the creation of their reservation, and events no journal makes.
func TestLedger_ApplyEvents(t *testing.T) {
	t.Run("ChangeBeforeCreation", func(t *testing.T) {
		l := postgres.NewLedger(MustOpenDB(t))
		events, want := outboxLog(rand.New(rand.NewPCG(1, 2)), 1)
		// The last change first: it creates the row in its final state; the earlier
		// events then change nothing.
		for i := len(events) - 1; i >= 0; i-- {
			revguardtest.MustApply(t, l, events[i:i+1])
			if i == len(events)-1 {
				revguardtest.CheckReservations(t, revguardtest.AllOrders(t, l, revguard.OrderFilter{}), want)
			}
		}
		revguardtest.CheckReservations(t, revguardtest.AllOrders(t, l, revguard.OrderFilter{}), want)
	})
	t.Run("SKUHistory", func(t *testing.T) {
		schema := MustCreateSchema(t)
		l := postgres.NewLedger(MustOpenDBIn(t, schema))
		var log revguardtest.EventLog
		log.PutSKU("shoe", 10)
		log.PutSKU("hat", 3)
		log.PutSKU("shoe", 7)
		opens := revguardtest.LedgerTime.Add(time.Hour)
		log.Events[2].OpensAt = opens
		revguardtest.MustApply(t, l, log.Events[2:])
		revguardtest.MustApply(t, l, log.Events) // the first put comes late, and twice
		got, err := l.SKUHistory(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		want := []postgres.SKUChange{
			{SKU: "hat", Seq: 2, Time: log.Events[1].Time, Stock: 3, PerCustomerLimit: 5, HoldSeconds: 600},
			{SKU: "shoe", Seq: 1, Time: log.Events[0].Time, Stock: 10, PerCustomerLimit: 5, HoldSeconds: 600},
			{SKU: "shoe", Seq: 3, Time: log.Events[2].Time, Stock: 7, PerCustomerLimit: 5, HoldSeconds: 600, OpensAt: opens},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("SKUHistory = %+v\nwant %+v", got, want)
		}
		if got, err := l.SKUHistory(t.Context(), "hat"); err != nil || !reflect.DeepEqual(got, want[:1]) {
			t.Fatalf("SKUHistory(hat) = %+v, %v", got, err)
		}
		// The SKU row keeps the latest settings, although the oldest put came last.
		var stock int64
		if err := MustConnect(t, schema).QueryRow(t.Context(), `SELECT stock FROM skus WHERE id = 'shoe'`).Scan(&stock); err != nil || stock != 7 {
			t.Fatalf("shoe's stock = %d, %v; want 7", stock, err)
		}
	})
	valid := revguard.Event{Seq: 1, Type: revguard.EventReserved, Time: revguardtest.LedgerTime, SKU: "shoe",
		ReservationID: revguardtest.ReservationID(1), CustomerID: "alice", Quantity: 1, ExpiresAt: revguardtest.LedgerTime.Add(time.Minute)}
	for _, tt := range []struct {
		name   string
		change func(*revguard.Event)
	}{
		{"ErrSeqZero", func(ev *revguard.Event) { ev.Seq = 0 }},
		{"ErrSeqTooLarge", func(ev *revguard.Event) { ev.Seq = math.MaxInt64 + 1 }},
		{"ErrUnknownType", func(ev *revguard.Event) { ev.Type = 99 }},
		{"ErrNoReservationID", func(ev *revguard.Event) { ev.ReservationID = "" }},
		{"ErrNoCustomer", func(ev *revguard.Event) { ev.CustomerID = "" }},
		{"ErrNoExpiry", func(ev *revguard.Event) { ev.ExpiresAt = time.Time{} }},
		{"ErrQuantity", func(ev *revguard.Event) { ev.Quantity = 0 }},
		{"ErrSKUPutNoSKU", func(ev *revguard.Event) { ev.Type, ev.SKU = revguard.EventSKUPut, "" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := postgres.NewLedger(MustOpenDB(t))
			bad := valid
			bad.Seq = 2
			tt.change(&bad)
			if err := l.ApplyEvents(t.Context(), []revguard.Event{valid, bad}); err == nil {
				t.Fatalf("ApplyEvents with %+v: no error", bad)
			}
			if p, err := l.FindOrders(t.Context(), revguard.OrderFilter{}); err != nil || len(p.Items) != 0 {
				t.Fatalf("after a failed batch: %+v, %v; want nothing", p.Items, err)
			}
		})
	}
}

// TestLedger_PlansFollowGrowth applies small batches of bare changes (the embedded
// journal's) to a ledger that starts empty, then grows: once the table is large, the
// changes must find their rows through the primary key rather than by scanning
// reservations, whatever plan the first batches got on the same connections.
func TestLedger_PlansFollowGrowth(t *testing.T) {
	schema := MustCreateSchema(t)
	db := MustOpenDBIn(t, schema)
	l := postgres.NewLedger(db)
	g := eventGen{t: time.Now()}
	var buf []revguard.Event
	const small, grow, late = 10, 16, 40
	var updates int64 // changes applied: rows updated
	apply := func(batches, size int) {
		for range batches {
			buf = g.batch(buf, size)
			revguardtest.MustApply(t, l, buf)
			for _, ev := range buf {
				if ev.Type != revguard.EventReserved {
					updates++
				}
			}
		}
	}
	apply(small, 64)  // plans made on a nearly empty table
	apply(grow, 4096) // big batches: a scan may well be the best plan for them
	apply(late, 64)   // 32 changes each, in a table of 33,000 rows
	db.Close()        // its backends report their statistics as they exit
	conn := MustConnect(t, schema)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var scans, n int64
		if err := conn.QueryRow(t.Context(), `SELECT coalesce(seq_scan, 0), n_tup_upd FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'reservations'`, schema).Scan(&scans, &n); err != nil {
			t.Fatal(err)
		}
		if n >= updates {
			// Those before the table grew, and a few more (the migration's index builds
			// count as scans); a plan that stuck would scan in each of the late batches.
			if limit := int64(small + grow + late/4); scans > limit {
				t.Fatalf("%d sequential scans of reservations in %d batches, want at most %d", scans, small+grow+late, limit)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_stat_user_tables shows %d updates, want %d", n, updates)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
