package main

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
	_ "modernc.org/sqlite"
)

// TestExport_WaitingRoom runs a pre-queue of 30 customers through its draw and a few
// admissions, then exports the room log: the records in order, and the draw
// reproduced from its seed and the join order. A log whose draw was tampered with (two
// places swapped) is refused.
func TestExport_WaitingRoom(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openLedgerStack(t, dir, false)
	clock := revguardtest.NewClock(time.Time{})
	opens := clock.Now().Add(time.Minute)
	if _, _, err := s.inv.PutSKU(ctx, "shoe", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: opens}); err != nil {
		t.Fatal(err)
	}
	room := inproc.NewWaitingRoom(sqlite.NewRoomLog(s.db), s.inv)
	room.Now, room.Tick = clock.Now, 0
	if err := room.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := room.PutRoom(ctx, "shoe", revguard.RoomSettings{PreQueueSeconds: 600, AdmitPerSecond: 3}); err != nil {
		t.Fatal(err)
	}
	var joined []string
	for i := range 30 {
		c := fmt.Sprintf("c-%02d", i)
		joined = append(joined, c)
		if _, _, err := room.Join(ctx, "shoe", c); err != nil {
			t.Fatal(err)
		}
	}
	clock.Set(opens)
	if err := room.Advance(ctx, "shoe"); err != nil {
		t.Fatal(err)
	}
	r, err := room.FindRoom(ctx, "shoe")
	if err != nil {
		t.Fatal(err)
	}
	room.Close()
	s.close(t)

	out, errOut, err := runExport(t, dir, false, "--waiting-room", "--sku", "shoe")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errOut)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != strings.Join(roomColumns, ",") {
		t.Fatalf("header %q", rows[0])
	}
	// room_put, 30 joins, the draw and its 30 places, 3 admissions.
	var types []string
	for _, row := range rows[1:] {
		types = append(types, row[2])
	}
	if len(rows)-1 != 1+30+1+30+3 || types[0] != "room_put" || types[31] != "drawn" || types[len(types)-1] != "admitted" {
		t.Fatalf("%d records: %v", len(rows)-1, types)
	}
	order := revguard.DrawOrder(r.Seed, joined)
	for i, row := range rows[33 : 33+30] {
		if row[2] != "placed" || row[4] != order[i] || row[5] != fmt.Sprint(i+1) {
			t.Fatalf("place %d: %q, want %s at %d", i+1, row, order[i], i+1)
		}
	}
	if want := fmt.Sprintf("draw of shoe: 30 customers, seed %x: reproduced", r.Seed); !strings.Contains(errOut, want) {
		t.Fatalf("stderr %q, want %q", errOut, want)
	}

	out, _, err = runExport(t, dir, false, "--waiting-room", "--format", "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var first roomLine
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil || first.Type != "room_put" || *first.AdmitPerSecond != 3 {
		t.Fatalf("first JSON line %+v, %v", first, err)
	}

	// Tamper with the draw: swap the first two places.
	db, err := sql.Open("sqlite", filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE room_log SET customer_id = CASE customer_id WHEN ?1 THEN ?2 ELSE ?1 END
		WHERE type = ?3 AND customer_id IN (?1, ?2)`, order[0], order[1], int(revguard.RoomPlaced)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, errOut, err = runExport(t, dir, false, "--waiting-room")
	if err == nil || !strings.Contains(errOut, "DOES NOT MATCH") {
		t.Fatalf("export of a tampered draw: %v, stderr %q; want a refusal", err, errOut)
	}
	if _, _, err := runExport(t, dir, false, "--waiting-room", "--since", "2026-01-01T00:00:00Z"); err == nil {
		t.Fatal("--waiting-room with --since: want a usage error")
	}
}

// TestRoomRowOf_Formulas: the rooms' CSV shows a customer id or SKU that a spreadsheet
// would run as a formula as text, as the reservations' CSV does.
func TestRoomRowOf_Formulas(t *testing.T) {
	row := roomRowOf(revguard.RoomRecord{Seq: 3, SKU: "-sale", Type: revguard.RoomJoined, CustomerID: "=cmd|x", Ticket: 1})
	if row[1] != "'-sale" || row[4] != "'=cmd|x" {
		t.Errorf("row %q: want the SKU and the customer id each with a leading '", row)
	}
	if row := roomRowOf(revguard.RoomRecord{Seq: 4, SKU: "sale", Type: revguard.RoomJoined, CustomerID: "c-1"}); row[1] != "sale" || row[4] != "c-1" {
		t.Errorf("row %q: plain text changed", row)
	}
}
