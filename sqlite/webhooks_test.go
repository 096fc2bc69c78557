package sqlite_test

import (
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/revguardtest"
	"github.com/revenueguard/revguard/sqlite"
)

func TestWebhooks(t *testing.T) {
	revguardtest.TestWebhooks(t, func(tb testing.TB) (revguard.Webhooks, func(uint64)) {
		db := MustOpenDB(tb)
		log := sqlite.NewChangeLog(db)
		// The log's newest change moves only by appending changes, each seq after the
		// last, as the change writer does: one batch per call, a journal seq after the
		// last.
		setLastChange := func(seq uint64) {
			tb.Helper()
			st, err := log.LoadChangeState(tb.Context())
			if err != nil {
				tb.Fatal(err)
			}
			var changes []revguard.Change
			for s := st.LastSeq + 1; s <= seq; s++ {
				changes = append(changes, change(s, revguard.ChangeHeld, revguardtest.LedgerTime))
			}
			if err := log.AppendChanges(tb.Context(), changes, st.JournalSeq+1, nil); err != nil {
				tb.Fatalf("append changes up to %d: %v", seq, err)
			}
		}
		return sqlite.NewWebhooks(db), setLastChange
	})
}
