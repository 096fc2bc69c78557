package loadtest

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/revenueguard/revguard"
)

// PostgresBaseline is a BaselineStore on PostgreSQL, the way a shop would do it with
// its database alone: in one transaction,
//
//	UPDATE skus SET available = available - $q WHERE sku = $1 AND available >= $q
//
// then the customer's units so far (the SKU's row lock, taken by the UPDATE, makes this
// read safe until commit), then an INSERT of the reservation. Its two tables are named
// loadtest_baseline_<random>_skus and _reservations, and dropped in Close.
type PostgresBaseline struct {
	url   string
	conns int
	pool  *pgxpool.Pool
	skus  string // quoted table names
	res   string
	limit int64
}

var _ BaselineStore = (*PostgresBaseline)(nil)

// baselineSKU is the id of the baseline's only SKU.
const baselineSKU = "loadtest"

// NewPostgresBaseline returns a baseline for the PostgreSQL at url with a pool of conns
// connections (keep it below the server's max_connections).
func NewPostgresBaseline(url string, conns int) *PostgresBaseline {
	name := "loadtest_baseline_" + randomHex(6)
	return &PostgresBaseline{
		url: url, conns: conns,
		skus: pgx.Identifier{name + "_skus"}.Sanitize(),
		res:  pgx.Identifier{name + "_reservations"}.Sanitize(),
	}
}

// Name implements BaselineStore.
func (p *PostgresBaseline) Name() string { return "postgres" }

// Tables returns the quoted names of the baseline's tables, for tests that check the
// clean-up.
func (p *PostgresBaseline) Tables() []string { return []string{p.skus, p.res} }

// Setup implements BaselineStore.
func (p *PostgresBaseline) Setup(ctx context.Context, stock, limit int64) error {
	cfg, err := pgxpool.ParseConfig(p.url)
	if err != nil {
		return fmt.Errorf("postgres baseline: %w", err)
	}
	cfg.MaxConns = int32(min(p.conns, 1000))
	p.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres baseline: connect: %w", err)
	}
	p.limit = limit
	stmts := []string{
		`CREATE TABLE ` + p.skus + ` (sku text PRIMARY KEY, stock bigint NOT NULL, available bigint NOT NULL)`,
		`CREATE TABLE ` + p.res + ` (id bigserial PRIMARY KEY, sku text NOT NULL, customer_id text NOT NULL,
			quantity bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
		`CREATE INDEX ON ` + p.res + ` (sku, customer_id)`,
	}
	for _, q := range stmts {
		if _, err := p.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("postgres baseline: create tables: %w", err)
		}
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO `+p.skus+` (sku, stock, available) VALUES ($1, $2, $2)`, baselineSKU, stock); err != nil {
		return fmt.Errorf("postgres baseline: insert sku: %w", err)
	}
	return nil
}

// errRefused rolls a reservation back without an error to report.
var errRefused = errors.New("refused")

// Reserve implements BaselineStore.
func (p *PostgresBaseline) Reserve(ctx context.Context, customerID string, qty int64) (revguard.Code, error) {
	var code revguard.Code
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE `+p.skus+` SET available = available - $2 WHERE sku = $1 AND available >= $2`, baselineSKU, qty)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			code = revguard.CodeSoldOut
			return errRefused
		}
		var have int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(quantity), 0) FROM `+p.res+` WHERE sku = $1 AND customer_id = $2`,
			baselineSKU, customerID).Scan(&have); err != nil {
			return err
		}
		if have+qty > p.limit {
			code = revguard.CodeLimitExceeded
			return errRefused
		}
		_, err = tx.Exec(ctx, `INSERT INTO `+p.res+` (sku, customer_id, quantity) VALUES ($1, $2, $3)`, baselineSKU, customerID, qty)
		return err
	})
	switch {
	case errors.Is(err, errRefused):
		return code, nil
	case err != nil:
		return "", fmt.Errorf("postgres baseline: reserve: %w", err)
	}
	return "", nil
}

// Audit implements BaselineStore.
func (p *PostgresBaseline) Audit(ctx context.Context) (int64, map[string]int64, error) {
	var avail int64
	if err := p.pool.QueryRow(ctx, `SELECT available FROM `+p.skus+` WHERE sku = $1`, baselineSKU).Scan(&avail); err != nil {
		return 0, nil, fmt.Errorf("postgres baseline: read available: %w", err)
	}
	rows, err := p.pool.Query(ctx, `SELECT customer_id, sum(quantity)::bigint FROM `+p.res+` GROUP BY customer_id`)
	if err != nil {
		return 0, nil, fmt.Errorf("postgres baseline: read reservations: %w", err)
	}
	reserved := make(map[string]int64)
	var cust string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&cust, &n}, func() error {
		reserved[cust] = n
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("postgres baseline: read reservations: %w", err)
	}
	return avail, reserved, nil
}

// Close implements BaselineStore.
func (p *PostgresBaseline) Close(ctx context.Context) error {
	if p.pool == nil {
		return nil
	}
	defer p.pool.Close()
	if _, err := p.pool.Exec(ctx, `DROP TABLE IF EXISTS `+p.skus+`, `+p.res); err != nil {
		return fmt.Errorf("postgres baseline: drop tables: %w", err)
	}
	return nil
}
