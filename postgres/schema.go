package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// DropSchema drops schema, with every table in it, from the database at url. It is
// for tools and tests that made a schema of their own in a shared database (revguard
// loadtest's distributed baseline, the end-to-end tests); a deployment never calls
// it, and it refuses DefaultSchema so that a slip cannot drop a production ledger.
// Dropping a schema that does not exist is not an error.
func DropSchema(ctx context.Context, url, schema string) error {
	if !schemaName.MatchString(schema) || schema == DefaultSchema {
		return fmt.Errorf("postgres: drop schema: refusing schema %q", schema)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("postgres: drop schema %s: %w", schema, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("postgres: drop schema %s: %w", schema, err)
	}
	return nil
}
