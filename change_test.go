package revguard_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestChanges_PutDocument: a SKU's PUT carries all its settings, opens_at null when the
// SKU has none; the other changes carry only the counts.
func TestChanges_PutDocument(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	opens := t0.Add(90 * time.Minute)
	c := revguard.NewChanges(revguard.ChangeState{})
	events := []revguard.Event{
		{Type: revguard.EventSKUPut, SKU: "s", Time: t0, Stock: 2, PerCustomerLimit: 1, HoldSeconds: 600},
		{Type: revguard.EventSKUPut, SKU: "s", Time: t0, Stock: 2, PerCustomerLimit: 1, HoldSeconds: 600, OpensAt: opens},
		{Type: revguard.EventReserved, SKU: "s", Time: t0, ReservationID: "a", CustomerID: "c", Quantity: 1, ExpiresAt: t0.Add(time.Hour)},
		{Type: revguard.EventSKUPut, SKU: "s", Time: t0, Stock: 1, PerCustomerLimit: 1, HoldSeconds: 600}, // lowered to sold out
	}
	var out []revguard.Change
	for i := range events {
		events[i].Seq = uint64(i + 1)
		out = c.Apply(out, &events[i])
	}
	if len(out) != 5 {
		t.Fatalf("%d changes, want 5", len(out))
	}
	want := []string{
		`{"id":"evt_1","seq":1,"type":"sku.created","created_at":"2026-11-27T10:00:00Z","sku":{"id":"s","stock":2,"available":2,"held":0,"sold":0,"per_customer_limit":1,"hold_seconds":600,"opens_at":null}}`,
		`{"id":"evt_2","seq":2,"type":"sku.updated","created_at":"2026-11-27T10:00:00Z","sku":{"id":"s","stock":2,"available":2,"held":0,"sold":0,"per_customer_limit":1,"hold_seconds":600,"opens_at":"2026-11-27T11:30:00Z"}}`,
		`{"id":"evt_3","seq":3,"type":"reservation.held","created_at":"2026-11-27T10:00:00Z","sku":{"id":"s","stock":2,"available":1,"held":1,"sold":0},"reservation":{"id":"a","customer_id":"c","quantity":1,"expires_at":"2026-11-27T11:00:00Z"}}`,
		`{"id":"evt_4","seq":4,"type":"sku.updated","created_at":"2026-11-27T10:00:00Z","sku":{"id":"s","stock":1,"available":0,"held":1,"sold":0,"per_customer_limit":1,"hold_seconds":600,"opens_at":null}}`,
		`{"id":"evt_5","seq":5,"type":"sku.sold_out","created_at":"2026-11-27T10:00:00Z","sku":{"id":"s","stock":1,"available":0,"held":1,"sold":0}}`,
	}
	for i, ch := range out {
		if string(ch.Body) != want[i] {
			t.Errorf("change %d:\n got %s\nwant %s", i, ch.Body, want[i])
		}
		var b revguard.ChangeBody // what a Go consumer decodes into
		if err := json.Unmarshal(ch.Body, &b); err != nil || (i == 1) != (b.SKU.OpensAt != nil) || (b.SKU.HoldSeconds != 0) != (i != 2 && i != 4) {
			t.Errorf("change %d decoded: %+v, %v", i, b.SKU, err)
		}
	}
}

// TestChanges_Apply turns sequences of journal events into changes: the types, the
// derived sold_out and restocked, and the counts each change carries.
func TestChanges_Apply(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	put := func(stock int64) revguard.Event {
		return revguard.Event{Type: revguard.EventSKUPut, SKU: "s", Time: t0, Stock: stock, PerCustomerLimit: 1, HoldSeconds: 600}
	}
	res := func(typ revguard.EventType, id string, q int64) revguard.Event {
		return revguard.Event{Type: typ, SKU: "s", Time: t0, ReservationID: id, CustomerID: "c-" + id, Quantity: q, ExpiresAt: t0.Add(time.Hour)}
	}
	revived := res(revguard.EventConfirmed, "a", 1)
	revived.Revived = true
	type change struct {
		typ                          revguard.ChangeType
		stock, available, held, sold int64
	}
	for _, tc := range []struct {
		name   string
		events []revguard.Event
		want   []change
	}{
		{"CreateHoldConfirm", []revguard.Event{put(2), res(revguard.EventReserved, "a", 1), res(revguard.EventConfirmed, "a", 1)}, []change{
			{revguard.ChangeSKUCreated, 2, 2, 0, 0}, {revguard.ChangeHeld, 2, 1, 1, 0}, {revguard.ChangeConfirmed, 2, 1, 0, 1}}},
		{"SoldOutOnce", []revguard.Event{put(2), res(revguard.EventReserved, "a", 2), res(revguard.EventConfirmed, "a", 2)}, []change{
			{revguard.ChangeSKUCreated, 2, 2, 0, 0}, {revguard.ChangeHeld, 2, 0, 2, 0}, {revguard.ChangeSKUSoldOut, 2, 0, 2, 0},
			{revguard.ChangeConfirmed, 2, 0, 0, 2}}},
		{"ReleaseAndSellOutAgain", []revguard.Event{put(1), res(revguard.EventReserved, "a", 1), res(revguard.EventReleased, "a", 1), res(revguard.EventReserved, "b", 1)}, []change{
			{revguard.ChangeSKUCreated, 1, 1, 0, 0}, {revguard.ChangeHeld, 1, 0, 1, 0}, {revguard.ChangeSKUSoldOut, 1, 0, 1, 0},
			{revguard.ChangeReleased, 1, 1, 0, 0}, {revguard.ChangeHeld, 1, 0, 1, 0}, {revguard.ChangeSKUSoldOut, 1, 0, 1, 0}}},
		{"Restock", []revguard.Event{put(1), put(5), put(5), put(3)}, []change{
			{revguard.ChangeSKUCreated, 1, 1, 0, 0}, {revguard.ChangeSKURestocked, 5, 5, 0, 0}, {revguard.ChangeSKUUpdated, 5, 5, 0, 0},
			{revguard.ChangeSKUUpdated, 5, 5, 0, 0}, {revguard.ChangeSKUUpdated, 3, 3, 0, 0}}},
		{"LoweredToSoldOut", []revguard.Event{put(3), res(revguard.EventReserved, "a", 1), put(1)}, []change{
			{revguard.ChangeSKUCreated, 3, 3, 0, 0}, {revguard.ChangeHeld, 3, 2, 1, 0}, {revguard.ChangeSKUUpdated, 1, 0, 1, 0},
			{revguard.ChangeSKUSoldOut, 1, 0, 1, 0}}},
		{"ExpireThenRevive", []revguard.Event{put(1), res(revguard.EventReserved, "a", 1), res(revguard.EventExpired, "a", 1), revived}, []change{
			{revguard.ChangeSKUCreated, 1, 1, 0, 0}, {revguard.ChangeHeld, 1, 0, 1, 0}, {revguard.ChangeSKUSoldOut, 1, 0, 1, 0},
			{revguard.ChangeExpired, 1, 1, 0, 0}, {revguard.ChangeConfirmed, 1, 0, 0, 1}, {revguard.ChangeSKUSoldOut, 1, 0, 0, 1}}},
		{"CreatedEmptyIsNotSoldOut", []revguard.Event{put(0)}, []change{{revguard.ChangeSKUCreated, 0, 0, 0, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := revguard.NewChanges(revguard.ChangeState{LastSeq: 10})
			var out []revguard.Change
			for i := range tc.events {
				tc.events[i].Seq = uint64(i + 1)
				out = c.Apply(out, &tc.events[i])
			}
			var got []change
			for i, ch := range out {
				var b revguard.ChangeBody
				if err := json.Unmarshal(ch.Body, &b); err != nil {
					t.Fatal(err)
				}
				if ch.Seq != uint64(11+i) || b.Seq != ch.Seq || b.ID != revguard.ChangeID(ch.Seq) || b.Type != ch.Type || ch.SKU != "s" || !b.CreatedAt.Equal(t0) {
					t.Fatalf("change %d: %+v, body %s", i, ch, ch.Body)
				}
				if (b.Reservation != nil) != (ch.Type == revguard.ChangeHeld || ch.Type == revguard.ChangeConfirmed ||
					ch.Type == revguard.ChangeReleased || ch.Type == revguard.ChangeExpired) {
					t.Fatalf("change %d (%s) reservation %+v", i, ch.Type, b.Reservation)
				}
				got = append(got, change{ch.Type, b.SKU.Stock, b.SKU.Available, b.SKU.Held, b.SKU.Sold})
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("changes\n got %v\nwant %v", got, tc.want)
			}
			if touched := c.Touched(); len(touched) != 1 || touched[0].SKU != "s" || len(c.Touched()) != 0 {
				t.Fatalf("Touched: %+v", touched)
			}
		})
	}
}
