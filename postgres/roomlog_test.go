package postgres_test

import (
	"slices"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
)

// TestRoomLog copies room records, twice and overlapping as several nodes would, and
// reads each back once, in order, with every field.
func TestRoomLog(t *testing.T) {
	ctx := t.Context()
	l := postgres.NewRoomLog(MustOpenDB(t))
	at := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)
	recs := []revguard.RoomRecord{
		{Seq: 10, Type: revguard.RoomPut, SKU: "s", Time: at, Settings: revguard.RoomSettings{PreQueueSeconds: 60, AdmitPerSecond: 5, AdmissionSeconds: 30}},
		{Seq: 11, Type: revguard.RoomJoined, SKU: "s", Time: at, CustomerID: "c-1"},
		{Seq: 12, Type: revguard.RoomDrawn, SKU: "s", Time: at, Seed: make([]byte, revguard.DrawSeedLen), Ticket: 1},
		{Seq: 13, Type: revguard.RoomPlaced, SKU: "s", Time: at, CustomerID: "c-1", Ticket: 1},
		{Seq: 14, Type: revguard.RoomAdmitted, SKU: "s", Time: at, CustomerID: "c-1", Ticket: 1, Until: at.Add(time.Minute)},
		{Seq: 3, Type: revguard.RoomJoined, SKU: "a", Time: at, CustomerID: "c-2", Ticket: 1},
	}
	if err := l.CopyRoomRecords(ctx, recs[:4]); err != nil {
		t.Fatal(err)
	}
	if err := l.CopyRoomRecords(ctx, recs[2:]); err != nil { // overlapping: 12 and 13 again
		t.Fatal(err)
	}
	if last, err := l.LastSeq(ctx, "s"); err != nil || last != 14 {
		t.Fatalf("LastSeq(s) = %d, %v; want 14", last, err)
	}
	if last, err := l.LastSeq(ctx, "none"); err != nil || last != 0 {
		t.Fatalf("LastSeq(none) = %d, %v; want 0", last, err)
	}
	var got []revguard.RoomRecord
	if err := l.ReadRoomRecords(ctx, "", func(r revguard.RoomRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := append([]revguard.RoomRecord{recs[5]}, recs[:5]...) // by SKU, then seq
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Type != w.Type || g.SKU != w.SKU || !g.Time.Equal(w.Time) || g.CustomerID != w.CustomerID ||
			g.Ticket != w.Ticket || !g.Until.Equal(w.Until) || !slices.Equal(g.Seed, w.Seed) || g.Settings != w.Settings {
			t.Errorf("record %d = %+v, want %+v", i, g, w)
		}
	}
	got = got[:0]
	if err := l.ReadRoomRecords(ctx, "a", func(r revguard.RoomRecord) error { got = append(got, r); return nil }); err != nil || len(got) != 1 {
		t.Fatalf("records of a: %+v, %v", got, err)
	}
	for _, tc := range []struct {
		after, before int64
		want          []int64
	}{{10, 13, []int64{11, 12}}, {12, 0, []int64{13, 14}}, {14, 0, nil}, {0, 11, []int64{10}}} {
		var seqs []int64
		err := l.ReadRoomRecordsBetween(ctx, "s", tc.after, tc.before, func(r revguard.RoomRecord) error { seqs = append(seqs, r.Seq); return nil })
		if err != nil || !slices.Equal(seqs, tc.want) {
			t.Errorf("records of s between %d and %d: %v, %v; want %v", tc.after, tc.before, seqs, err, tc.want)
		}
	}
}
