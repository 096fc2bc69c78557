package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
)

func TestLedger(t *testing.T) {
	revguardtest.TestLedger(t, func(tb testing.TB) revguard.Ledger {
		return sqlite.NewLedger(MustOpenDB(tb))
	})
}

func TestLedger_Reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revguard.db")
	var log revguardtest.EventLog
	a := log.Reserve("shoe", "alice", 1)
	log.Reserve("shoe", "bob", 1)
	log.Change(revguard.EventConfirmed, a, "o-1", false)

	db := sqlite.NewDB(path)
	if err := db.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	l := sqlite.NewLedger(db)
	revguardtest.MustApply(t, l, log.Events)
	page, err := l.FindOrders(t.Context(), revguard.OrderFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	l = sqlite.NewLedger(MustOpenDBAt(t, path, time.Now))
	revguardtest.CheckReservations(t, revguardtest.AllOrders(t, l, revguard.OrderFilter{}), log.Expect())
	if n, err := l.LastApplied(t.Context()); err != nil || n != 3 {
		t.Fatalf("LastApplied after reopen = %d, %v; want 3", n, err)
	}
	// A cursor survives a restart: the key is in the file.
	next, err := l.FindOrders(t.Context(), revguard.OrderFilter{Limit: 1, Cursor: page.NextCursor})
	if err != nil || len(next.Items) != 1 || next.Items[0].ID != revguardtest.ReservationID(2) {
		t.Fatalf("page 2 after restart: %+v, %v", next, err)
	}
}

// TestLedger_ReadOnly reads a ledger that another DB is writing, as revguard export and
// verify do beside a running server.
func TestLedger_ReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revguard.db")
	w := sqlite.NewLedger(MustOpenDBAt(t, path, time.Now))
	var log revguardtest.EventLog
	for range 10 {
		log.Reserve("shoe", "c", 1)
	}
	revguardtest.MustApply(t, w, log.Events[:5])

	rdb := sqlite.NewDB(path)
	rdb.ReadOnly = true
	if err := rdb.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	r := sqlite.NewLedger(rdb)

	s, err := r.Scan(t.Context(), sqlite.ScanFilter{})
	if err != nil {
		t.Fatal(err)
	}
	// The writer goes on; the scan keeps its snapshot.
	revguardtest.MustApply(t, w, log.Events[5:])
	var n int
	for s.Next() {
		n++
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 5 || s.Total() != 5 || s.LastApplied() != 5 {
		t.Fatalf("scan read %d rows, total %d, last applied %d; want 5, 5, 5 (its snapshot)", n, s.Total(), s.LastApplied())
	}
	s.Close()
	if got := revguardtest.AllOrders(t, r, revguard.OrderFilter{}); len(got) != 10 {
		t.Fatalf("read-only ledger sees %d reservations after the writer committed, want 10", len(got))
	}
	if err := r.ApplyEvents(t.Context(), log.Events); err == nil {
		t.Fatal("ApplyEvents on a read-only DB: no error")
	}
}

func TestLedger_Scan(t *testing.T) {
	l := sqlite.NewLedger(MustOpenDB(t))
	var log revguardtest.EventLog
	for i := range 30 {
		r := log.Reserve([]string{"a", "b"}[i%2], "c", 1)
		if i%3 == 0 {
			log.Change(revguard.EventReleased, r, "", false)
		}
	}
	revguardtest.MustApply(t, l, log.Events)
	all := log.Expect()
	since := all[10].CreatedAt
	tests := []struct {
		name string
		f    sqlite.ScanFilter
		keep func(revguard.Reservation) bool
	}{
		{"All", sqlite.ScanFilter{}, func(revguard.Reservation) bool { return true }},
		{"SKU", sqlite.ScanFilter{SKU: "b"}, func(r revguard.Reservation) bool { return r.SKU == "b" }},
		{"Since", sqlite.ScanFilter{Since: since}, func(r revguard.Reservation) bool { return !r.CreatedAt.Before(since) }},
		{"Both", sqlite.ScanFilter{SKU: "a", Since: since}, func(r revguard.Reservation) bool { return r.SKU == "a" && !r.CreatedAt.Before(since) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []revguard.Reservation
			for _, r := range all {
				if tt.keep(r) {
					want = append(want, r)
				}
			}
			s, err := l.Scan(context.Background(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []revguard.Reservation
			for s.Next() {
				got = append(got, s.Reservation())
				if s.Seq() == 0 || s.Seq() > s.LastApplied() {
					t.Fatalf("row seq %d out of 1..%d", s.Seq(), s.LastApplied())
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			if s.Total() != len(want) {
				t.Errorf("Total = %d, want %d", s.Total(), len(want))
			}
			revguardtest.CheckReservations(t, got, want)
		})
	}
}

// TestLedger_Sync checks that Sync reports the last applied seq, and fails on a
// read-only DB, which has nothing of its own to make durable.
func TestLedger_Sync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revguard.db")
	l := sqlite.NewLedger(MustOpenDBAt(t, path, time.Now))
	if seq, err := l.Sync(t.Context()); err != nil || seq != 0 {
		t.Fatalf("Sync of an empty ledger = %d, %v; want 0", seq, err)
	}
	var log revguardtest.EventLog
	log.Reserve("shoe", "alice", 1)
	log.Reserve("shoe", "bob", 1)
	revguardtest.MustApply(t, l, log.Events)
	if seq, err := l.Sync(t.Context()); err != nil || seq != 2 {
		t.Fatalf("Sync = %d, %v; want 2", seq, err)
	}

	rdb := sqlite.NewDB(path)
	rdb.ReadOnly = true
	if err := rdb.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if _, err := sqlite.NewLedger(rdb).Sync(t.Context()); err == nil {
		t.Fatal("Sync on a read-only DB: no error")
	}
}

func TestLedger_FindReservation(t *testing.T) {
	revguardtest.TestFindReservation(t, func(tb testing.TB) revguardtest.ReservationLedger {
		return sqlite.NewLedger(MustOpenDB(tb))
	})
}

// TestLedger_StockHistory applies puts (two of one SKU in one batch, and one in a batch
// that fails) in small batches and then all again, and reads the history back: every
// put once, with its time and stock, in order; nothing of the failed batch.
func TestLedger_StockHistory(t *testing.T) {
	l := sqlite.NewLedger(MustOpenDB(t))
	var log revguardtest.EventLog
	log.PutSKU("a", 5)
	log.PutSKU("a", 7) // same batch as the first
	r := log.Reserve("a", "c", 1)
	log.PutSKU("b", 3)
	log.Change(revguard.EventReleased, r, "", false)
	log.PutSKU("a", 9)
	for i := 0; i < len(log.Events); i += 2 {
		revguardtest.MustApply(t, l, log.Events[i:min(i+2, len(log.Events))])
	}
	revguardtest.MustApply(t, l, log.Events) // a replay changes nothing

	// A batch that fails leaves no history.
	bad := log.PutSKU("a", 1)
	ghost := revguard.Event{Seq: bad.Seq + 1, Type: revguard.EventConfirmed, Time: bad.Time, SKU: "a", ReservationID: "01GHOST"}
	if err := l.ApplyEvents(t.Context(), []revguard.Event{bad, ghost}); err == nil {
		t.Fatal("a batch confirming an unknown reservation was applied")
	}

	var want []revguard.StockChange
	for _, sku := range []string{"a", "b"} {
		for _, ev := range log.Events[:len(log.Events)-1] {
			if ev.Type == revguard.EventSKUPut && ev.SKU == sku {
				want = append(want, revguard.StockChange{SKU: sku, Time: ev.Time, Stock: ev.Stock})
			}
		}
	}
	for _, tt := range []struct {
		sku  string
		want []revguard.StockChange
	}{{"", want}, {"b", want[3:]}} {
		s, err := l.Scan(t.Context(), sqlite.ScanFilter{SKU: tt.sku, StockHistory: true})
		if err != nil {
			t.Fatal(err)
		}
		got := s.StockHistory()
		s.Close()
		if len(got) != len(tt.want) {
			t.Fatalf("history of %q: %+v, want %+v", tt.sku, got, tt.want)
		}
		for i := range got {
			if got[i].SKU != tt.want[i].SKU || !got[i].Time.Equal(tt.want[i].Time) || got[i].Time.Location() != time.UTC ||
				got[i].Stock != tt.want[i].Stock {
				t.Fatalf("history of %q, row %d: %+v, want %+v", tt.sku, i, got[i], tt.want[i])
			}
		}
	}
	// Without asking, a scan reads no history.
	s, err := l.Scan(t.Context(), sqlite.ScanFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h := s.StockHistory(); h != nil {
		t.Fatalf("history read without StockHistory: %+v", h)
	}
}
