package postgres_test

import (
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/revguardtest"
)

func TestWebhooks(t *testing.T) {
	revguardtest.TestWebhooks(t, func(tb testing.TB) (revguard.Webhooks, func(uint64)) {
		db := MustOpenDB(tb)
		// Setting the newest seq of the log is all CreateWebhook reads of it.
		setLastChange := func(seq uint64) {
			tb.Helper()
			conn := MustConnect(tb, db.Schema)
			if _, err := conn.Exec(tb.Context(), `UPDATE change_meta SET last_seq = $1 WHERE id = 1`, int64(seq)); err != nil {
				tb.Fatalf("set the newest change to %d: %v", seq, err)
			}
		}
		return postgres.NewWebhooks(db), setLastChange
	})
}
