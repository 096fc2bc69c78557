package redis_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/redis"
)

func TestCheckDurability(t *testing.T) {
	safe := []string{"--appendonly", "yes", "--appendfsync", "always", "--aof-load-truncated", "no"}
	for _, tt := range []struct {
		name string
		args []string
		want []string // a word each warning must contain, in order; none for no warning
	}{
		{"OK_Safe", safe, nil},
		{"WarnLoadTruncated", []string{"--appendonly", "yes", "--appendfsync", "always"}, []string{"aof-load-truncated is yes"}},
		{"WarnNoAOF", []string{"--appendonly", "no"}, []string{"appendonly is no"}},
		{"WarnEverysec", []string{"--appendonly", "yes", "--appendfsync", "everysec", "--aof-load-truncated", "no"}, []string{"appendfsync is everysec"}},
		{"WarnEverysecAndLoadTruncated", []string{"--appendonly", "yes", "--appendfsync", "everysec"},
			[]string{"appendfsync is everysec", "aof-load-truncated is yes"}},
		{"WarnFsyncNo", []string{"--appendonly", "yes", "--appendfsync", "no", "--aof-load-truncated", "no"}, []string{"appendfsync is no"}},
		{"WarnConfigDisabled_AOF", append(slices.Clone(safe), "--rename-command", "CONFIG", ""), []string{"appendfsync and aof-load-truncated are unknown"}},
		{"WarnConfigDisabled_NoAOF", []string{"--appendonly", "no", "--rename-command", "CONFIG", ""}, []string{"appendonly is no"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, t.TempDir(), tt.args...)
			warnings, err := redis.CheckDurability(t.Context(), MustDial(t, srv.URL()))
			if err != nil {
				t.Fatal(err)
			}
			ok := len(warnings) == len(tt.want)
			for i := 0; ok && i < len(tt.want); i++ {
				ok = strings.Contains(warnings[i], tt.want[i])
			}
			if !ok {
				t.Fatalf("warnings %q, want one about each of %q", warnings, tt.want)
			}
		})
	}
}

func TestPing(t *testing.T) {
	c := MustDial(t, redisURL(t))
	d, err := redis.Ping(t.Context(), c)
	if err != nil || d <= 0 {
		t.Fatalf("Ping = %v, %v", d, err)
	}
	srv := startServer(t, t.TempDir())
	down := MustDial(t, srv.URL())
	srv.kill()
	if _, err := redis.Ping(t.Context(), down); err == nil {
		t.Fatal("Ping of a killed server succeeded")
	}
}

func TestInventory_UnavailableWhenRedisIsDown(t *testing.T) {
	srv := startServer(t, t.TempDir())
	inv := MustOpenInventory(t, MustDial(t, srv.URL()), "down", nil)
	ctx := t.Context()
	if _, _, err := inv.PutSKU(ctx, "d-1", revguard.SKUUpdate{Stock: 5, PerCustomerLimit: 5, HoldSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	r, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "d-1", CustomerID: "c1", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv.kill()
	for name, call := range map[string]func() error{
		"PutSKU": func() error {
			_, _, err := inv.PutSKU(ctx, "d-1", revguard.SKUUpdate{Stock: 6, PerCustomerLimit: 5, HoldSeconds: 60})
			return err
		},
		"FindSKU":      func() error { _, err := inv.FindSKU(ctx, "d-1"); return err },
		"Availability": func() error { _, err := inv.Availability(ctx, "d-1"); return err },
		"Reserve": func() error {
			_, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "d-1", CustomerID: "c2", Quantity: 1})
			return err
		},
		"Reserve_Key": func() error {
			_, _, err := inv.Reserve(ctx, revguard.ReserveRequest{SKU: "d-1", CustomerID: "c2", Quantity: 1, IdempotencyKey: "k"})
			return err
		},
		"FindIdempotent": func() error {
			_, _, err := inv.FindIdempotent(ctx, revguard.ReserveRequest{SKU: "d-1", CustomerID: "c2", Quantity: 1, IdempotencyKey: "k"})
			return err
		},
		"FindReservation": func() error { _, err := inv.FindReservation(ctx, r.ID); return err },
		"Confirm": func() error {
			_, err := inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: "c1"})
			return err
		},
		"Release":    func() error { _, err := inv.Release(ctx, r.ID, "c1"); return err },
		"ForEachSKU": func() error { return inv.ForEachSKU(ctx, func(revguard.SKU) bool { return true }) },
	} {
		if code := revguard.ErrorCode(call()); code != revguard.CodeUnavailable {
			t.Errorf("%s with Redis down: code %q, want unavailable", name, code)
		}
	}
	// What is not an id is not found, without asking Redis.
	if _, err := inv.FindReservation(ctx, "../../etc"); revguard.ErrorCode(err) != revguard.CodeReservationNotFound {
		t.Errorf("FindReservation(bad id) with Redis down: %v, want reservation_not_found", err)
	}
}
