package revguardtest

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
)

// TestWebhooks runs the conformance suite of revguard.Webhooks against the stores made
// by open, each empty and used by one subtest. open also returns setLastChange, which
// makes seq the newest change of the change log the store shares a database with (the
// log CreateWebhook takes its cursors from); the suite only ever raises it, and
// setLastChange fails tb when it cannot.
func TestWebhooks(t *testing.T, open func(tb testing.TB) (s revguard.Webhooks, setLastChange func(seq uint64))) {
	store := func(tb testing.TB) revguard.Webhooks {
		s, _ := open(tb)
		return s
	}
	t.Run("CreateWebhook", func(t *testing.T) {
		t.Run("OK", func(t *testing.T) { testWebhookCreate(t, store(t)) })
		t.Run("CursorAtNewestChange", func(t *testing.T) { testWebhookCursor(t, open) })
		t.Run("ErrDuplicateID", func(t *testing.T) { testWebhookDuplicate(t, store(t)) })
		t.Run("ErrLimit", func(t *testing.T) { testWebhookLimit(t, store(t)) })
		t.Run("ConcurrentLimit", func(t *testing.T) { testWebhookConcurrentLimit(t, store(t)) })
		t.Run("Types", func(t *testing.T) { testWebhookTypes(t, store(t)) })
		t.Run("Times", func(t *testing.T) { testWebhookTimes(t, store(t)) })
	})
	t.Run("ListWebhooks", func(t *testing.T) {
		t.Run("Empty", func(t *testing.T) { testWebhookListEmpty(t, store(t)) })
		t.Run("OldestFirst", func(t *testing.T) { testWebhookListOrder(t, store(t)) })
	})
	t.Run("DeleteWebhook", func(t *testing.T) {
		t.Run("OK", func(t *testing.T) { testWebhookDelete(t, store(t)) })
	})
	t.Run("ErrNotFound", func(t *testing.T) { testWebhookNotFound(t, store(t)) })
	t.Run("PauseWebhook", func(t *testing.T) {
		t.Run("OK", func(t *testing.T) { testWebhookPause(t, store(t)) })
	})
	t.Run("ResumeWebhook", func(t *testing.T) {
		t.Run("OK", func(t *testing.T) { testWebhookResume(t, store(t)) })
		t.Run("Active", func(t *testing.T) { testWebhookResumeActive(t, store(t)) })
	})
	t.Run("RecordDelivery", func(t *testing.T) {
		t.Run("OK", func(t *testing.T) { testDeliveryOK(t, store(t)) })
		t.Run("KeepsLastSuccess", func(t *testing.T) { testDeliveryLastSuccess(t, store(t)) })
		t.Run("Pauses", func(t *testing.T) { testDeliveryPauses(t, store(t)) })
		t.Run("LeavesPaused", func(t *testing.T) { testDeliveryLeavesPaused(t, store(t)) })
		t.Run("Deleted", func(t *testing.T) { testDeliveryDeleted(t, store(t)) })
		t.Run("CursorNeverBack", func(t *testing.T) { testDeliveryCursorNeverBack(t, store(t)) })
	})
}

// newWebhook returns an endpoint as the admin API registers it: ID, URL, Secret and
// CreatedAt set, the rest zero.
func newWebhook(id string, createdAt time.Time, types ...revguard.ChangeType) revguard.Webhook {
	return revguard.Webhook{ID: id, URL: "https://hooks.example/" + id, Types: types,
		Secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("key of "+id)), CreatedAt: createdAt}
}

func mustCreateWebhook(tb testing.TB, s revguard.Webhooks, w revguard.Webhook) revguard.Webhook {
	tb.Helper()
	got, err := s.CreateWebhook(tb.Context(), w)
	if err != nil {
		tb.Fatalf("CreateWebhook(%s): %v", w.ID, err)
	}
	return got
}

func mustFindWebhook(tb testing.TB, s revguard.Webhooks, id string) revguard.Webhook {
	tb.Helper()
	got, err := s.FindWebhook(tb.Context(), id)
	if err != nil {
		tb.Fatalf("FindWebhook(%s): %v", id, err)
	}
	return got
}

func mustRecordDelivery(tb testing.TB, s revguard.Webhooks, id string, d revguard.WebhookDelivery) {
	tb.Helper()
	if err := s.RecordDelivery(tb.Context(), id, d); err != nil {
		tb.Fatalf("RecordDelivery(%s, %+v): %v", id, d, err)
	}
}

func mustListWebhooks(tb testing.TB, s revguard.Webhooks) []revguard.Webhook {
	tb.Helper()
	list, err := s.ListWebhooks(tb.Context())
	if err != nil {
		tb.Fatalf("ListWebhooks: %v", err)
	}
	return list
}

// checkWebhook fails tb unless got is want, field by field: times as instants, and in
// UTC as the stores return them; Types as lists, nil and empty both meaning every type.
func checkWebhook(tb testing.TB, what string, got, want revguard.Webhook) {
	tb.Helper()
	var diffs []string
	for _, tt := range []struct {
		name      string
		got, want time.Time
	}{
		{"CreatedAt", got.CreatedAt, want.CreatedAt},
		{"NextAttemptAt", got.NextAttemptAt, want.NextAttemptAt},
		{"LastSuccessAt", got.LastSuccessAt, want.LastSuccessAt},
		{"PausedAt", got.PausedAt, want.PausedAt},
	} {
		if !tt.got.Equal(tt.want) || !tt.got.IsZero() && tt.got.Location() != time.UTC {
			diffs = append(diffs, fmt.Sprintf("%s = %v (in %s), want %v in UTC", tt.name, tt.got, tt.got.Location(), tt.want))
		}
	}
	if !slices.Equal(got.Types, want.Types) {
		diffs = append(diffs, fmt.Sprintf("Types = %q, want %q", got.Types, want.Types))
	}
	got.CreatedAt, got.NextAttemptAt, got.LastSuccessAt, got.PausedAt, got.Types = time.Time{}, time.Time{}, time.Time{}, time.Time{}, nil
	want.CreatedAt, want.NextAttemptAt, want.LastSuccessAt, want.PausedAt, want.Types = time.Time{}, time.Time{}, time.Time{}, time.Time{}, nil
	if !reflect.DeepEqual(got, want) {
		diffs = append(diffs, fmt.Sprintf("\n got %+v\nwant %+v", got, want))
	}
	if len(diffs) > 0 {
		tb.Fatalf("%s: %s", what, strings.Join(diffs, "; "))
	}
}

func testWebhookCreate(t *testing.T, s revguard.Webhooks) {
	in := newWebhook("wh_1", LedgerTime, revguard.ChangeSKUSoldOut, revguard.ChangeHeld)
	got := mustCreateWebhook(t, s, in)
	want := in
	want.Status, want.Cursor = revguard.WebhookActive, 0
	checkWebhook(t, "CreateWebhook", got, want)
	checkWebhook(t, "FindWebhook", mustFindWebhook(t, s, "wh_1"), want)
	if list := mustListWebhooks(t, s); len(list) != 1 {
		t.Fatalf("ListWebhooks returned %d endpoints, want 1", len(list))
	} else {
		checkWebhook(t, "ListWebhooks", list[0], want)
	}
}

// testWebhookCursor checks that an endpoint starts at the newest change when it is
// created, whatever the caller passed, and keeps its place as the log grows.
func testWebhookCursor(t *testing.T, open func(testing.TB) (revguard.Webhooks, func(uint64))) {
	s, setLastChange := open(t)
	first := mustCreateWebhook(t, s, newWebhook("wh_first", LedgerTime))
	if first.Cursor != 0 {
		t.Fatalf("created on an empty log: Cursor = %d, want 0", first.Cursor)
	}
	setLastChange(41)
	in := newWebhook("wh_second", LedgerTime.Add(time.Second))
	in.Status, in.Cursor = revguard.WebhookPaused, 99 // a store sets both itself
	second := mustCreateWebhook(t, s, in)
	if second.Cursor != 41 || second.Status != revguard.WebhookActive {
		t.Fatalf("created after change 41: Cursor %d, Status %q; want 41, active", second.Cursor, second.Status)
	}
	if got := mustFindWebhook(t, s, "wh_second"); got.Cursor != 41 || got.Status != revguard.WebhookActive {
		t.Fatalf("stored after change 41: Cursor %d, Status %q; want 41, active", got.Cursor, got.Status)
	}
	setLastChange(1000)
	if got := mustFindWebhook(t, s, "wh_first"); got.Cursor != 0 {
		t.Fatalf("the log grew: an endpoint's Cursor moved from 0 to %d", got.Cursor)
	}
	if got := mustCreateWebhook(t, s, newWebhook("wh_third", LedgerTime.Add(2*time.Second))); got.Cursor != 1000 {
		t.Fatalf("created after change 1000: Cursor = %d", got.Cursor)
	}
}

func testWebhookDuplicate(t *testing.T, s revguard.Webhooks) {
	w := mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	again := newWebhook("wh_1", LedgerTime.Add(time.Hour))
	again.URL = "https://other.example/"
	_, err := s.CreateWebhook(t.Context(), again)
	checkCode(t, "CreateWebhook(an existing id)", err, revguard.CodeInvalidRequest)
	checkWebhook(t, "the endpoint after a create of its id", mustFindWebhook(t, s, "wh_1"), w)
	if n := len(mustListWebhooks(t, s)); n != 1 {
		t.Fatalf("ListWebhooks: %d endpoints, want 1", n)
	}
}

func testWebhookLimit(t *testing.T, s revguard.Webhooks) {
	for i := range revguard.MaxWebhooks {
		mustCreateWebhook(t, s, newWebhook(fmt.Sprintf("wh_%02d", i), LedgerTime.Add(time.Duration(i))))
	}
	_, err := s.CreateWebhook(t.Context(), newWebhook("wh_over", LedgerTime))
	checkCode(t, fmt.Sprintf("CreateWebhook with %d endpoints", revguard.MaxWebhooks), err, revguard.CodeInvalidRequest)
	_, err = s.FindWebhook(t.Context(), "wh_over")
	checkCode(t, "FindWebhook(refused endpoint)", err, revguard.CodeWebhookNotFound)
	if n := len(mustListWebhooks(t, s)); n != revguard.MaxWebhooks {
		t.Fatalf("ListWebhooks: %d endpoints, want %d", n, revguard.MaxWebhooks)
	}
	// A deletion makes room for one more.
	if err := s.DeleteWebhook(t.Context(), "wh_00"); err != nil {
		t.Fatal(err)
	}
	mustCreateWebhook(t, s, newWebhook("wh_over", LedgerTime))
	_, err = s.CreateWebhook(t.Context(), newWebhook("wh_over2", LedgerTime))
	checkCode(t, "CreateWebhook with the limit reached again", err, revguard.CodeInvalidRequest)
}

// testWebhookConcurrentLimit creates twice the limit of endpoints at once, as admins on
// several nodes could: exactly MaxWebhooks are stored, and the others refused.
func testWebhookConcurrentLimit(t *testing.T, s revguard.Webhooks) {
	const n = 2 * revguard.MaxWebhooks
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.CreateWebhook(t.Context(), newWebhook(fmt.Sprintf("wh_%03d", i), LedgerTime.Add(time.Duration(i))))
		})
	}
	close(start)
	wg.Wait()
	var created []string
	for i, err := range errs {
		if err == nil {
			created = append(created, fmt.Sprintf("wh_%03d", i))
			continue
		}
		checkCode(t, fmt.Sprintf("concurrent CreateWebhook %d", i), err, revguard.CodeInvalidRequest)
	}
	if len(created) != revguard.MaxWebhooks {
		t.Fatalf("%d of %d concurrent creates succeeded, want %d", len(created), n, revguard.MaxWebhooks)
	}
	var listed []string
	for _, w := range mustListWebhooks(t, s) {
		listed = append(listed, w.ID)
	}
	// Each create had a distinct CreatedAt in the order of its id: the list is in id
	// order too.
	if !slices.Equal(listed, created) {
		t.Fatalf("ListWebhooks = %q, want the created endpoints %q", listed, created)
	}
}

func testWebhookTypes(t *testing.T, s revguard.Webhooks) {
	reversed := slices.Clone(revguard.ChangeTypes)
	slices.Reverse(reversed)
	for i, types := range [][]revguard.ChangeType{
		nil,
		{},
		{revguard.ChangeSKUSoldOut},
		{revguard.ChangeConfirmed, revguard.ChangeSKURestocked},
		revguard.ChangeTypes,
		reversed,
	} {
		id := fmt.Sprintf("wh_%d", i)
		mustCreateWebhook(t, s, newWebhook(id, LedgerTime.Add(time.Duration(i)), types...))
		got := mustFindWebhook(t, s, id)
		if !slices.Equal(got.Types, types) {
			t.Errorf("Types %q came back as %q", types, got.Types)
		}
		for _, ct := range revguard.ChangeTypes {
			if want := len(types) == 0 || slices.Contains(types, ct); got.Wants(ct) != want {
				t.Errorf("endpoint of types %q: Wants(%s) = %v, want %v", types, ct, got.Wants(ct), want)
			}
		}
	}
}

// testWebhookTimes checks that every time comes back as the same instant to the
// nanosecond, in UTC, whatever zone it was given in.
func testWebhookTimes(t *testing.T, s revguard.Webhooks) {
	zone := time.FixedZone("IST", 5*3600+1800)
	want := mustCreateWebhook(t, s, newWebhook("wh_1", time.Date(2026, 11, 27, 15, 30, 0, 123456789, zone)))
	checkWebhook(t, "a new endpoint", mustFindWebhook(t, s, "wh_1"), want)
	// A clock reading also carries a monotonic reading, which no store keeps.
	d := revguard.WebhookDelivery{Cursor: 1, Failures: 1, NextAttemptAt: want.CreatedAt.Add(time.Minute + time.Nanosecond),
		LastError: "timeout", LastSuccessAt: time.Now().In(zone)}
	mustRecordDelivery(t, s, "wh_1", d)
	want.Cursor, want.Failures, want.NextAttemptAt, want.LastError, want.LastSuccessAt = d.Cursor, d.Failures, d.NextAttemptAt, d.LastError, d.LastSuccessAt
	checkWebhook(t, "after a delivery", mustFindWebhook(t, s, "wh_1"), want)
	p, err := s.PauseWebhook(t.Context(), "wh_1")
	if err != nil {
		t.Fatal(err)
	}
	if p.PausedAt.IsZero() || p.PausedAt.Location() != time.UTC {
		t.Fatalf("PausedAt = %v, want a time in UTC", p.PausedAt)
	}
}

func testWebhookListEmpty(t *testing.T, s revguard.Webhooks) {
	if list := mustListWebhooks(t, s); len(list) != 0 {
		t.Fatalf("ListWebhooks of an empty store: %+v", list)
	}
}

func testWebhookListOrder(t *testing.T, s revguard.Webhooks) {
	// Created in an order that is neither by time nor by id, a nanosecond apart.
	at := map[string]time.Time{
		"wh_a": LedgerTime.Add(2),
		"wh_b": LedgerTime,
		"wh_c": LedgerTime.Add(1),
		"wh_d": LedgerTime.Add(-time.Hour),
	}
	want := map[string]revguard.Webhook{}
	for _, id := range []string{"wh_a", "wh_b", "wh_c", "wh_d"} {
		want[id] = mustCreateWebhook(t, s, newWebhook(id, at[id], revguard.ChangeHeld))
	}
	list := mustListWebhooks(t, s)
	var ids []string
	for _, w := range list {
		ids = append(ids, w.ID)
	}
	if wantIDs := []string{"wh_d", "wh_b", "wh_c", "wh_a"}; !slices.Equal(ids, wantIDs) {
		t.Fatalf("ListWebhooks = %q, want oldest first: %q", ids, wantIDs)
	}
	for _, w := range list {
		checkWebhook(t, "ListWebhooks entry "+w.ID, w, want[w.ID])
	}
}

func testWebhookDelete(t *testing.T, s revguard.Webhooks) {
	ctx := t.Context()
	mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	keep := mustCreateWebhook(t, s, newWebhook("wh_2", LedgerTime.Add(time.Second)))
	if err := s.DeleteWebhook(ctx, "wh_1"); err != nil {
		t.Fatalf("DeleteWebhook: %v", err)
	}
	_, err := s.FindWebhook(ctx, "wh_1")
	checkCode(t, "FindWebhook(deleted)", err, revguard.CodeWebhookNotFound)
	checkCode(t, "DeleteWebhook(deleted)", s.DeleteWebhook(ctx, "wh_1"), revguard.CodeWebhookNotFound)
	_, err = s.PauseWebhook(ctx, "wh_1")
	checkCode(t, "PauseWebhook(deleted)", err, revguard.CodeWebhookNotFound)
	_, err = s.ResumeWebhook(ctx, "wh_1")
	checkCode(t, "ResumeWebhook(deleted)", err, revguard.CodeWebhookNotFound)
	list := mustListWebhooks(t, s)
	if len(list) != 1 {
		t.Fatalf("ListWebhooks after a delete: %d endpoints, want 1", len(list))
	}
	checkWebhook(t, "the other endpoint", list[0], keep)
	// Its id may be used again, for an endpoint that starts afresh.
	again := mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime.Add(2*time.Second)))
	checkWebhook(t, "the id used again", mustFindWebhook(t, s, "wh_1"), again)
}

func testWebhookNotFound(t *testing.T, s revguard.Webhooks) {
	ctx := t.Context()
	mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	for _, id := range []string{"wh_2", "", "WH_1", "wh_1 "} {
		_, err := s.FindWebhook(ctx, id)
		checkCode(t, fmt.Sprintf("FindWebhook(%q)", id), err, revguard.CodeWebhookNotFound)
		checkCode(t, fmt.Sprintf("DeleteWebhook(%q)", id), s.DeleteWebhook(ctx, id), revguard.CodeWebhookNotFound)
		_, err = s.PauseWebhook(ctx, id)
		checkCode(t, fmt.Sprintf("PauseWebhook(%q)", id), err, revguard.CodeWebhookNotFound)
		_, err = s.ResumeWebhook(ctx, id)
		checkCode(t, fmt.Sprintf("ResumeWebhook(%q)", id), err, revguard.CodeWebhookNotFound)
	}
	if got := mustFindWebhook(t, s, "wh_1"); got.Status != revguard.WebhookActive {
		t.Fatalf("the calls on other ids changed wh_1: %+v", got)
	}
}

// testWebhookPause checks that the admin's pause keeps the endpoint's place and its
// failures, and that pausing it again keeps the time it was first paused.
func testWebhookPause(t *testing.T, s revguard.Webhooks) {
	want := mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	d := revguard.WebhookDelivery{Cursor: 5, Failures: 2, NextAttemptAt: LedgerTime.Add(time.Minute), LastError: "timeout", LastSuccessAt: LedgerTime}
	mustRecordDelivery(t, s, "wh_1", d)
	got, err := s.PauseWebhook(t.Context(), "wh_1")
	if err != nil {
		t.Fatalf("PauseWebhook: %v", err)
	}
	if got.PausedAt.IsZero() {
		t.Fatalf("PauseWebhook: PausedAt not set: %+v", got)
	}
	want.Status, want.PausedAt = revguard.WebhookPaused, got.PausedAt
	want.Cursor, want.Failures, want.NextAttemptAt, want.LastError, want.LastSuccessAt = d.Cursor, d.Failures, d.NextAttemptAt, d.LastError, d.LastSuccessAt
	checkWebhook(t, "PauseWebhook", got, want)
	checkWebhook(t, "FindWebhook after the pause", mustFindWebhook(t, s, "wh_1"), want)
	again, err := s.PauseWebhook(t.Context(), "wh_1")
	if err != nil {
		t.Fatalf("PauseWebhook again: %v", err)
	}
	checkWebhook(t, "PauseWebhook again", again, want)
}

// testWebhookResume checks that resuming an endpoint the dispatcher gave up on makes it
// active with its failures reset, from where it was: its cursor, last error and last
// success stay.
func testWebhookResume(t *testing.T, s revguard.Webhooks) {
	want := mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	d := revguard.WebhookDelivery{Cursor: 9, Failures: 8, NextAttemptAt: LedgerTime.Add(time.Hour),
		LastError: "status 500", LastSuccessAt: LedgerTime.Add(time.Second), Paused: true}
	mustRecordDelivery(t, s, "wh_1", d)
	if got := mustFindWebhook(t, s, "wh_1"); got.Status != revguard.WebhookPaused {
		t.Fatalf("paused by the dispatcher: %+v", got)
	}
	got, err := s.ResumeWebhook(t.Context(), "wh_1")
	if err != nil {
		t.Fatalf("ResumeWebhook: %v", err)
	}
	want.Cursor, want.LastError, want.LastSuccessAt = d.Cursor, d.LastError, d.LastSuccessAt
	checkWebhook(t, "ResumeWebhook", got, want)
	checkWebhook(t, "FindWebhook after the resume", mustFindWebhook(t, s, "wh_1"), want)

	// Paused by the admin, then resumed.
	if _, err := s.PauseWebhook(t.Context(), "wh_1"); err != nil {
		t.Fatal(err)
	}
	got, err = s.ResumeWebhook(t.Context(), "wh_1")
	if err != nil {
		t.Fatalf("ResumeWebhook after PauseWebhook: %v", err)
	}
	checkWebhook(t, "ResumeWebhook after PauseWebhook", got, want)
}

func testWebhookResumeActive(t *testing.T, s revguard.Webhooks) {
	want := mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	mustRecordDelivery(t, s, "wh_1", revguard.WebhookDelivery{Cursor: 3, Failures: 1, NextAttemptAt: LedgerTime.Add(time.Second), LastError: "refused"})
	got, err := s.ResumeWebhook(t.Context(), "wh_1")
	if err != nil {
		t.Fatalf("ResumeWebhook of an active endpoint: %v", err)
	}
	want.Cursor, want.LastError = 3, "refused"
	checkWebhook(t, "ResumeWebhook of an active endpoint", got, want)
}

func testDeliveryOK(t *testing.T, s revguard.Webhooks) {
	want := mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime, revguard.ChangeHeld))
	d := revguard.WebhookDelivery{Cursor: 7, Failures: 2, NextAttemptAt: LedgerTime.Add(time.Minute), LastError: "status 500", LastSuccessAt: LedgerTime}
	mustRecordDelivery(t, s, "wh_1", d)
	want.Cursor, want.Failures, want.NextAttemptAt, want.LastError, want.LastSuccessAt = d.Cursor, d.Failures, d.NextAttemptAt, d.LastError, d.LastSuccessAt
	checkWebhook(t, "after a failed attempt", mustFindWebhook(t, s, "wh_1"), want)

	// The retry succeeds: no failures, no attempt due, no error.
	d = revguard.WebhookDelivery{Cursor: 8, LastSuccessAt: LedgerTime.Add(time.Minute)}
	mustRecordDelivery(t, s, "wh_1", d)
	want.Cursor, want.Failures, want.NextAttemptAt, want.LastError, want.LastSuccessAt = 8, 0, time.Time{}, "", d.LastSuccessAt
	checkWebhook(t, "after a delivery", mustFindWebhook(t, s, "wh_1"), want)
}

// testDeliveryLastSuccess checks that a delivery without a success (zero
// LastSuccessAt) keeps the last one.
func testDeliveryLastSuccess(t *testing.T, s revguard.Webhooks) {
	mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	first := LedgerTime.Add(time.Second)
	mustRecordDelivery(t, s, "wh_1", revguard.WebhookDelivery{Cursor: 1, LastSuccessAt: first})
	mustRecordDelivery(t, s, "wh_1", revguard.WebhookDelivery{Cursor: 1, Failures: 1, NextAttemptAt: first.Add(time.Second), LastError: "timeout"})
	if got := mustFindWebhook(t, s, "wh_1"); !got.LastSuccessAt.Equal(first) || got.Failures != 1 {
		t.Fatalf("after a failure: %+v; want LastSuccessAt %v kept, 1 failure", got, first)
	}
	second := first.Add(time.Minute)
	mustRecordDelivery(t, s, "wh_1", revguard.WebhookDelivery{Cursor: 2, LastSuccessAt: second})
	if got := mustFindWebhook(t, s, "wh_1"); !got.LastSuccessAt.Equal(second) || got.Cursor != 2 {
		t.Fatalf("after a success: %+v; want LastSuccessAt %v, Cursor 2", got, second)
	}
}

// testDeliveryPauses checks that the dispatcher giving up pauses the endpoint, and that
// recording so again keeps the time it was first paused.
func testDeliveryPauses(t *testing.T, s revguard.Webhooks) {
	want := mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	mustRecordDelivery(t, s, "wh_1", revguard.WebhookDelivery{Cursor: 4, LastSuccessAt: LedgerTime})
	d := revguard.WebhookDelivery{Cursor: 4, Failures: 8, LastError: "status 503", Paused: true}
	mustRecordDelivery(t, s, "wh_1", d)
	got := mustFindWebhook(t, s, "wh_1")
	if got.PausedAt.IsZero() {
		t.Fatalf("paused by the dispatcher: PausedAt not set: %+v", got)
	}
	want.Status, want.PausedAt = revguard.WebhookPaused, got.PausedAt
	want.Cursor, want.Failures, want.LastError, want.LastSuccessAt = 4, 8, "status 503", LedgerTime
	checkWebhook(t, "paused by the dispatcher", got, want)
	mustRecordDelivery(t, s, "wh_1", d)
	checkWebhook(t, "paused by the dispatcher twice", mustFindWebhook(t, s, "wh_1"), want)
}

// testDeliveryLeavesPaused checks that a delivery recorded after the admin paused the
// endpoint (an attempt that was under way) stores where it stands but leaves it
// paused.
func testDeliveryLeavesPaused(t *testing.T, s revguard.Webhooks) {
	want, err := s.PauseWebhook(t.Context(), mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime)).ID)
	if err != nil {
		t.Fatal(err)
	}
	d := revguard.WebhookDelivery{Cursor: 8, LastSuccessAt: LedgerTime.Add(time.Second)}
	mustRecordDelivery(t, s, "wh_1", d)
	want.Cursor, want.LastSuccessAt = d.Cursor, d.LastSuccessAt
	checkWebhook(t, "a delivery after the pause", mustFindWebhook(t, s, "wh_1"), want)
}

// testDeliveryDeleted checks that a delivery of an endpoint deleted meanwhile, or of
// one that never was, is ignored: no error, and no endpoint comes back.
func testDeliveryDeleted(t *testing.T, s revguard.Webhooks) {
	mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	if err := s.DeleteWebhook(t.Context(), "wh_1"); err != nil {
		t.Fatal(err)
	}
	d := revguard.WebhookDelivery{Cursor: 7, Failures: 2, NextAttemptAt: LedgerTime.Add(time.Minute), LastError: "status 500", LastSuccessAt: LedgerTime}
	mustRecordDelivery(t, s, "wh_1", d)
	mustRecordDelivery(t, s, "wh_never", d)
	d.Paused = true
	mustRecordDelivery(t, s, "wh_1", d)
	_, err := s.FindWebhook(t.Context(), "wh_1")
	checkCode(t, "FindWebhook after a delivery of the deleted endpoint", err, revguard.CodeWebhookNotFound)
	if list := mustListWebhooks(t, s); len(list) != 0 {
		t.Fatalf("ListWebhooks: %+v, want none", list)
	}
}

// testDeliveryCursorNeverBack checks that a report from a worker behind another (two
// dispatchers for a moment, in distributed mode) never moves the cursor back, while
// the rest of the report is stored.
func testDeliveryCursorNeverBack(t *testing.T, s revguard.Webhooks) {
	mustCreateWebhook(t, s, newWebhook("wh_1", LedgerTime))
	mustRecordDelivery(t, s, "wh_1", revguard.WebhookDelivery{Cursor: 9, LastSuccessAt: LedgerTime})
	mustRecordDelivery(t, s, "wh_1", revguard.WebhookDelivery{Cursor: 5, Failures: 1, LastError: "status 500"})
	if w := mustFindWebhook(t, s, "wh_1"); w.Cursor != 9 || w.Failures != 1 || w.LastError != "status 500" {
		t.Fatalf("after a report behind: cursor %d, failures %d, last error %q; want 9, 1, status 500", w.Cursor, w.Failures, w.LastError)
	}
}
