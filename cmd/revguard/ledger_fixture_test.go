package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/revenueguard/revguard"
	"github.com/revenueguard/revguard/inproc"
	"github.com/revenueguard/revguard/journal"
	"github.com/revenueguard/revguard/sqlite"
)

// ledgerStack is the embedded write path on a data dir, laid out as serve lays it: the
// journal, the engine on it, and the SQLite ledger following it through a LedgerWriter.
// The ledger tests drive it directly, without HTTP.
type ledgerStack struct {
	dir     string
	j       *journal.Journal
	inv     *inproc.Inventory
	db      *sqlite.DB
	ledger  *sqlite.Ledger
	writer  *revguard.LedgerWriter
	stopW   context.CancelFunc
	writerD chan error
	once    sync.Once
}

// openLedgerStack opens the stack on dir; with follow false no ledger writer runs (the
// ledger falls behind). Close it, or let the test's cleanup do so.
func openLedgerStack(tb testing.TB, dir string, follow bool) *ledgerStack {
	tb.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	s := &ledgerStack{dir: dir}
	s.j = journal.New(filepath.Join(dir, journalDirName))
	s.j.Logger = quiet
	if err := s.j.Open(ctx); err != nil {
		tb.Fatalf("open journal: %v", err)
	}
	s.inv = inproc.NewInventory(s.j, filepath.Join(dir, snapshotsDirName))
	s.inv.Logger = quiet
	if err := s.inv.Open(ctx); err != nil {
		s.j.Close()
		tb.Fatalf("open inventory: %v", err)
	}
	s.db = sqlite.NewDB(filepath.Join(dir, dbFileName))
	s.db.Logger = quiet
	if err := s.db.Open(ctx); err != nil {
		s.inv.Close()
		s.j.Close()
		tb.Fatalf("open ledger: %v", err)
	}
	s.ledger = sqlite.NewLedger(s.db)
	if follow {
		s.writer = &revguard.LedgerWriter{Feed: s.j, Ledger: s.ledger, Logger: quiet}
		wctx, cancel := context.WithCancel(ctx)
		s.stopW, s.writerD = cancel, make(chan error, 1)
		go func() { s.writerD <- s.writer.Run(wctx) }()
	}
	tb.Cleanup(func() { s.close(tb) })
	return s
}

// catchUp waits until the ledger holds every durable event.
func (s *ledgerStack) catchUp(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.writer.WaitApplied(ctx, s.j.Durable()); err != nil {
		tb.Fatalf("ledger stuck at %d, journal durable at %d: %v", s.writer.Applied(), s.j.Durable(), err)
	}
}

// close stops the writer and closes everything in reverse order.
func (s *ledgerStack) close(tb testing.TB) {
	s.once.Do(func() {
		if s.stopW != nil {
			s.stopW()
			if err := <-s.writerD; err != nil {
				tb.Errorf("ledger writer: %v", err)
			}
		}
		if err := s.db.Close(); err != nil {
			tb.Errorf("close ledger: %v", err)
		}
		if err := s.inv.Close(); err != nil {
			tb.Errorf("close inventory: %v", err)
		}
		if err := s.j.Close(); err != nil {
			tb.Errorf("close journal: %v", err)
		}
	})
}

// sale runs a small sale: n customers reserve one unit of sku each; then every third
// confirms (with an order ref), every third releases, the rest stay held. It returns the
// reservations as the engine answered.
func (s *ledgerStack) sale(tb testing.TB, sku string, n int) []revguard.Reservation {
	tb.Helper()
	out, err := s.trySale(sku, n)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// trySale is sale for goroutines other than the test's: it returns its error.
func (s *ledgerStack) trySale(sku string, n int) ([]revguard.Reservation, error) {
	ctx := context.Background()
	if _, _, err := s.inv.PutSKU(ctx, sku, revguard.SKUUpdate{Stock: int64(n), PerCustomerLimit: 1, HoldSeconds: 600}); err != nil {
		return nil, err
	}
	var out []revguard.Reservation
	for i := range n {
		cust := fmt.Sprintf("%s-c%d", sku, i)
		r, _, err := s.inv.Reserve(ctx, revguard.ReserveRequest{SKU: sku, CustomerID: cust, Quantity: 1})
		if err != nil {
			return nil, fmt.Errorf("reserve: %w", err)
		}
		switch i % 3 {
		case 0:
			r, err = s.inv.Confirm(ctx, revguard.ConfirmRequest{ID: r.ID, CustomerID: cust, OrderRef: "order-" + cust})
		case 1:
			r, err = s.inv.Release(ctx, r.ID, cust)
		}
		if err != nil {
			return nil, fmt.Errorf("change %s: %w", r.ID, err)
		}
		out = append(out, r)
	}
	return out, nil
}
