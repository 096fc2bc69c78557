package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/client"
	"github.com/revenueguard/revguard/httpapi"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// TestClient_EveryEndpoint drives every call of the client package against the real
// server, with the bot check on, every answer validated against the OpenAPI document:
// the client speaks the API that is built, and its errors carry the API's codes. It
// runs in each mode.
func TestClient_EveryEndpoint(t *testing.T) { eachMode(t, testClientEveryEndpoint) }

func testClientEveryEndpoint(t *testing.T, m mode) {
	verifier := turnstiletest.New()
	if err := verifier.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(verifier.Close)
	srv := MustRunServer(t, t.TempDir(), nil, append(storeArgs(t, m), "--turnstile-secret", verifier.Secret, "--turnstile-url", verifier.URL())...)
	ctx := t.Context()
	admin := newAdmin(t, srv.URL, 4)

	if err := admin.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	if r := need(admin.Ready(ctx))(t); r.Status != "ready" || r.BotCheck != "on" {
		t.Fatalf("ready %+v", r)
	}
	if doc := need(admin.OpenAPI(ctx))(t); !bytes.Equal(doc, httpapi.OpenAPI()) {
		t.Fatal("the served OpenAPI document differs from the embedded one")
	}
	opens := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	sku := need(admin.PutSKU(ctx, "cli", client.SKUSettings{Stock: 3, PerCustomerLimit: 2, HoldSeconds: 300, OpensAt: opens}))(t)
	if sku.Meta.StatusCode != 201 || sku.Stock != 3 || sku.PerCustomerLimit != 2 || sku.HoldSeconds != 300 || !sku.OpensAt.Equal(opens) {
		t.Fatalf("created %+v", sku)
	}
	if sku = need(admin.PutSKU(ctx, "cli", client.SKUSettings{Stock: 4, PerCustomerLimit: 2}))(t); sku.Meta.StatusCode != 200 || sku.Available != 4 || !sku.OpensAt.IsZero() {
		t.Fatalf("updated %+v", sku)
	}
	sess := need(admin.CreateSession(ctx, client.SessionParams{CustomerID: "c-cli", TTL: 10 * time.Minute}))(t)
	if sess.CustomerID != "c-cli" || time.Until(sess.ExpiresAt) > 10*time.Minute || time.Until(sess.ExpiresAt) < 9*time.Minute {
		t.Fatalf("session %+v", sess)
	}
	buyer := admin.WithToken(sess.Token)

	// Reserve: the bot token is required; an idempotent replay answers the first hold.
	if _, err := buyer.Reserve(ctx, "cli", client.ReserveParams{}); client.ErrorCode(err) != revguard.CodeBotCheckFailed {
		t.Fatalf("without a bot token: %v", err)
	}
	key := client.NewIdempotencyKey()
	res := need(buyer.Reserve(ctx, "cli", client.ReserveParams{Quantity: 2, TurnstileToken: verifier.Token(), IdempotencyKey: key}))(t)
	if res.Status != revguard.StatusHeld || res.Quantity != 2 || res.CustomerID != "c-cli" || res.Meta.Replayed() || res.Meta.RequestID() == "" {
		t.Fatalf("reservation %+v", res)
	}
	again := need(buyer.Reserve(ctx, "cli", client.ReserveParams{Quantity: 2, TurnstileToken: "spent", IdempotencyKey: key}))(t)
	if again.ID != res.ID || !again.Meta.Replayed() {
		t.Fatalf("replay %+v", again)
	}
	_, err := buyer.Reserve(ctx, "cli", client.ReserveParams{TurnstileToken: verifier.Token()})
	if e, ok := err.(*client.Error); !ok || e.Code != revguard.CodeLimitExceeded || e.StatusCode != 409 || e.Detail == "" || e.RequestID == "" {
		t.Fatalf("over the limit: %#v", err)
	}
	if _, err := buyer.GetSKU(ctx, "cli"); client.ErrorCode(err) != revguard.CodeForbidden {
		t.Fatalf("a customer reading the admin view: %v", err)
	}
	if a := need(admin.Availability(ctx, "cli"))(t); a.SKU != "cli" || a.SoldOut {
		t.Fatalf("availability %+v", a)
	}
	if got := need(buyer.GetReservation(ctx, res.ID))(t); got.ID != res.ID {
		t.Fatalf("get %+v", got)
	}
	conf := need(buyer.Confirm(ctx, res.ID, client.ConfirmParams{OrderRef: "order-cli"}))(t)
	if conf.Status != revguard.StatusConfirmed || conf.OrderRef != "order-cli" || conf.ConfirmedAt.IsZero() {
		t.Fatalf("confirmed %+v", conf)
	}
	if _, err := buyer.Release(ctx, res.ID); client.ErrorCode(err) != revguard.CodeAlreadyConfirmed {
		t.Fatalf("release after confirm: %v", err)
	}
	res2 := need(admin.WithToken(need(admin.CreateSession(ctx, client.SessionParams{CustomerID: "c-2"}))(t).Token).
		Reserve(ctx, "cli", client.ReserveParams{TurnstileToken: verifier.Token()}))(t)
	if rel := need(admin.Release(ctx, res2.ID))(t); rel.Status != revguard.StatusReleased || rel.ReleasedAt.IsZero() {
		t.Fatalf("released by the admin %+v", rel)
	}
	if sku = need(admin.GetSKU(ctx, "cli"))(t); sku.Sold != 2 || sku.Held != 0 || sku.Available != 2 {
		t.Fatalf("counts %+v", sku)
	}
	// The buyer's list is the ledger's, which follows the inventory asynchronously.
	mine := need(buyer.MyReservations(ctx, client.OrderQuery{Limit: 10}))(t)
	for deadline := time.Now().Add(20 * time.Second); len(mine.Items) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mine = need(buyer.MyReservations(ctx, client.OrderQuery{Limit: 10}))(t)
	}
	if len(mine.Items) != 1 || mine.Items[0].ID != res.ID || mine.NextCursor != "" {
		t.Fatalf("mine %+v", mine)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var n int
		for r, err := range admin.AllOrders(ctx, client.OrderQuery{SKU: "cli", Limit: 1}) {
			if err != nil {
				t.Fatal(err)
			}
			if r.ID == res.ID && r.Status == revguard.StatusConfirmed || r.ID == res2.ID && r.Status == revguard.StatusReleased {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ledger did not converge: %d of 2", n)
		}
	}
	if m := need(admin.Metrics(ctx))(t); !strings.Contains(m, "revguard_") {
		t.Fatal("no revguard metrics")
	}
	// The change stream from its start: the SKU's put, then its update (restocked first).
	streamer, err := client.New(srv.URL, client.WithToken(testAdminToken)) // a stream is not a validated exchange
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	var got []string
	for ev, err := range streamer.Events(sctx, client.EventsParams{After: "evt_0", Types: []revguard.ChangeType{revguard.ChangeSKUCreated, revguard.ChangeSKURestocked, revguard.ChangeSKUUpdated}}) {
		if err != nil {
			t.Fatalf("events after %v: %v", got, err)
		}
		if ev.Change.SKU.ID != "cli" || ev.Change.ID != ev.ID || string(ev.Change.Type) != ev.Type {
			t.Fatalf("event %+v", ev)
		}
		if got = append(got, ev.Type); len(got) == 3 {
			break
		}
	}
	cancel()
	if want := "sku.created sku.restocked sku.updated"; strings.Join(got, " ") != want {
		t.Fatalf("events %v; want %s", got, want)
	}
	var refused error
	for _, err := range streamer.Events(ctx, client.EventsParams{After: "evt_999999"}) {
		refused = err
		break
	}
	if client.ErrorCode(refused) != revguard.CodeInvalidRequest {
		t.Fatalf("a stream ahead of the log: %v; want invalid_request", refused)
	}
	// Webhooks: create (the only answer with the secret), list, get, pause, resume, delete.
	wh := need(admin.CreateWebhook(ctx, client.WebhookParams{URL: "http://127.0.0.1:9/hooks", Types: []revguard.ChangeType{revguard.ChangeConfirmed}}))(t)
	if wh.Meta.StatusCode != 201 || !strings.HasPrefix(wh.Secret, "whsec_") || wh.Status != "active" || len(wh.Types) != 1 {
		t.Fatalf("webhook %+v", wh)
	}
	if list := need(admin.ListWebhooks(ctx))(t); len(list) != 1 || list[0].ID != wh.ID || list[0].Secret != "" {
		t.Fatalf("webhooks %+v", list)
	}
	if w := need(admin.PauseWebhook(ctx, wh.ID))(t); w.Status != "paused" || w.PausedAt.IsZero() {
		t.Fatalf("paused %+v", w)
	}
	if w := need(admin.ResumeWebhook(ctx, wh.ID))(t); w.Status != "active" || !w.PausedAt.IsZero() {
		t.Fatalf("resumed %+v", w)
	}
	if w := need(admin.GetWebhook(ctx, wh.ID))(t); w.ID != wh.ID || w.URL != "http://127.0.0.1:9/hooks" || w.Secret != "" {
		t.Fatalf("webhook %+v", w)
	}
	if err := admin.DeleteWebhook(ctx, wh.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.GetWebhook(ctx, wh.ID); client.ErrorCode(err) != revguard.CodeWebhookNotFound {
		t.Fatalf("after delete: %v", err)
	}
	// The waiting room: put, join (a bot check for a new place only), poll, get, delete.
	need(admin.PutSKU(ctx, "cli-room", client.SKUSettings{Stock: 1}))(t)
	room := need(admin.PutWaitingRoom(ctx, "cli-room", client.WaitingRoomSettings{AdmitPerSecond: 10, AdmissionSeconds: 60}))(t)
	if room.Meta.StatusCode != 201 || room.AdmitPerSecond != 10 || room.AdmissionSeconds != 60 || room.PreQueueSeconds != 3600 || room.Draw != nil {
		t.Fatalf("room %+v", room)
	}
	if _, err := buyer.JoinWaitingRoom(ctx, "cli-room", ""); client.ErrorCode(err) != revguard.CodeBotCheckFailed {
		t.Fatalf("join without a bot token: %v", err)
	}
	place := need(buyer.JoinWaitingRoom(ctx, "cli-room", verifier.Token()))(t)
	if place.Meta.StatusCode != 201 || place.CustomerID != "c-cli" || place.JoinedAt.IsZero() {
		t.Fatalf("place %+v", place)
	}
	if again := need(buyer.JoinWaitingRoom(ctx, "cli-room", ""))(t); again.Meta.StatusCode != 200 {
		t.Fatalf("joining again: %+v", again)
	}
	for deadline := time.Now().Add(10 * time.Second); place.Status != string(revguard.PlaceAdmitted); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("place %+v, never admitted", place)
		}
		place = need(buyer.Place(ctx, "cli-room"))(t)
	}
	if room = need(admin.GetWaitingRoom(ctx, "cli-room"))(t); room.Joined != 1 || room.Admitted != 1 {
		t.Fatalf("room %+v", room)
	}
	if err := admin.DeleteWaitingRoom(ctx, "cli-room"); err != nil {
		t.Fatal(err)
	}
	if _, err := buyer.Place(ctx, "cli-room"); client.ErrorCode(err) != revguard.CodeWaitingRoomNotFound {
		t.Fatalf("place after the room was turned off: %v", err)
	}
	if err := buyer.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := buyer.MyReservations(ctx, client.OrderQuery{}); client.ErrorCode(err) != revguard.CodeUnauthenticated {
		t.Fatalf("after logout: %v", err)
	}
}
