package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/revenueguard/revguard/postgres"
)

// openPostgresLedger opens the PostgreSQL ledger of a fleet, read-only: it writes
// nothing, and fails when the schema holds no ledger (a mistyped --postgres-schema).
func openPostgresLedger(ctx context.Context, s *storeFlags) (*postgres.DB, error) {
	db := postgres.NewDB(s.postgresURL)
	db.Schema = s.schema
	db.ReadOnly = true
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(ctx); err != nil {
		return nil, fmt.Errorf("open the PostgreSQL ledger: %w", err)
	}
	return db, nil
}

// openPostgresScan starts the scan of export in distributed mode: one consistent
// snapshot of the PostgreSQL ledger, which the fleet's nodes go on writing meanwhile.
func openPostgresScan(ctx context.Context, o exportOptions) (*exportScan, error) {
	db, err := openPostgresLedger(ctx, o.stores)
	if err != nil {
		return nil, err
	}
	scan, err := postgres.NewLedger(db).Scan(ctx, postgres.ScanFilter{SKU: o.sku, Since: o.since})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &exportScan{ledgerScan: scan, closeLedger: db.Close,
		where: fmt.Sprintf("PostgreSQL ledger, schema %s", o.stores.schema)}, nil
}
