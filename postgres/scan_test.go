package postgres_test

import (
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/revguardtest"
)

// TestLedger_Scan reads a ledger that a writer keeps changing: the scan sees one
// snapshot, reservations and SKU history alike.
func TestLedger_Scan(t *testing.T) {
	l := postgres.NewLedger(MustOpenDB(t))
	var log revguardtest.EventLog
	log.PutSKU("shoe", 10)
	var rs []revguard.Event
	for i := range 6 {
		rs = append(rs, log.Reserve([]string{"shoe", "hat"}[i%2], "c", 1))
	}
	log.Change(revguard.EventConfirmed, rs[0], "o", false)
	revguardtest.MustApply(t, l, log.Events)
	before := log.Expect()
	seqs := map[string]uint64{}
	for _, ev := range log.Events {
		if ev.ReservationID != "" {
			seqs[ev.ReservationID] = ev.Seq
		}
	}

	s, err := l.Scan(t.Context(), postgres.ScanFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The writer goes on; the scan keeps its snapshot.
	from := len(log.Events)
	log.PutSKU("shoe", 20)
	log.Reserve("shoe", "late", 1)
	log.Change(revguard.EventReleased, rs[1], "", false)
	revguardtest.MustApply(t, l, log.Events[from:])

	if s.Total() != len(before) || s.LastApplied() != uint64(from) {
		t.Fatalf("Total, LastApplied = %d, %d; want %d, %d", s.Total(), s.LastApplied(), len(before), from)
	}
	if _, err := s.SKUHistory(t.Context(), ""); err == nil {
		t.Fatal("SKUHistory before the reservations are read: no error")
	}
	var got []revguard.Reservation
	for s.Next() {
		got = append(got, s.Reservation())
		if want := seqs[s.Reservation().ID]; s.Seq() != want {
			t.Errorf("%s: Seq = %d, want %d", s.Reservation().ID, s.Seq(), want)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	revguardtest.CheckReservations(t, got, before)
	h, err := s.SKUHistory(t.Context(), "shoe")
	if err != nil || len(h) != 1 || h[0].Stock != 10 {
		t.Fatalf("SKUHistory in the snapshot = %+v, %v; want the first put only", h, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if h, err := l.SKUHistory(t.Context(), "shoe"); err != nil || len(h) != 2 {
		t.Fatalf("SKUHistory after the scan = %+v, %v; want both puts", h, err)
	}
}

func TestLedger_ScanFilter(t *testing.T) {
	l := postgres.NewLedger(MustOpenDB(t))
	var log revguardtest.EventLog
	for i := range 9 {
		log.Reserve([]string{"shoe", "hat", "coat"}[i%3], "c", 1)
	}
	revguardtest.MustApply(t, l, log.Events)
	all := log.Expect()
	tests := []struct {
		name string
		f    postgres.ScanFilter
		want []revguard.Reservation
	}{
		{"All", postgres.ScanFilter{}, all},
		{"SKU", postgres.ScanFilter{SKU: "hat"}, []revguard.Reservation{all[1], all[4], all[7]}},
		{"Since", postgres.ScanFilter{Since: all[6].CreatedAt}, all[6:]},
		{"SKUSince", postgres.ScanFilter{SKU: "shoe", Since: all[1].CreatedAt}, []revguard.Reservation{all[3], all[6]}},
		{"None", postgres.ScanFilter{Since: all[8].CreatedAt.Add(time.Nanosecond)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := l.Scan(t.Context(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []revguard.Reservation
			for s.Next() {
				got = append(got, s.Reservation())
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			if s.Total() != len(tt.want) {
				t.Errorf("Total = %d, want %d", s.Total(), len(tt.want))
			}
			revguardtest.CheckReservations(t, got, tt.want)
		})
	}
}
