package postgres_test

import (
	"testing"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/revguardtest"
)

func TestLedger(t *testing.T) {
	revguardtest.TestLedger(t, func(tb testing.TB) revguard.Ledger {
		return postgres.NewLedger(MustOpenDB(tb))
	})
}

func TestLedger_FindReservation(t *testing.T) {
	revguardtest.TestFindReservation(t, func(tb testing.TB) revguardtest.ReservationLedger {
		return postgres.NewLedger(MustOpenDB(tb))
	})
}
