package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/revenueguard/revguard/loadtest"
	"github.com/revenueguard/revguard/postgres"
	"github.com/revenueguard/revguard/redis"
	"github.com/revenueguard/revguard/turnstile/turnstiletest"
)

// distributedBaseline is the name of the distributed baseline's row in the report.
const distributedBaseline = "revguard distributed"

// runDistributedBaseline plays the sale's scenario against one revguard node in
// distributed mode, started in this process on c's Redis and PostgreSQL, in a Redis
// namespace and a PostgreSQL schema of its own that are removed afterwards, with a
// fake bot-check verifier; and reports its reserve path as a baseline row, with the
// sale's checks (ledger included).
func runDistributedBaseline(ctx context.Context, c loadtestConfig, progress io.Writer) (b *loadtest.BaselineReport, err error) {
	verifier := turnstiletest.New()
	if err := verifier.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: fake verifier: %w", err)
	}
	defer verifier.Close()
	m := newLoadtestMain(verifier, io.Discard)
	m.Config.RedisURL, m.Config.PostgresURL = c.redisURL, c.postgresURL
	m.Config.RedisNamespace = uniqueName("rglt")
	m.Config.PostgresSchema = uniqueName("revguard_loadtest_")
	defer func() {
		// Remove the namespace and the schema even when ctx is done, within a bound.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := removeFleetData(cctx, m.Config); cerr != nil && err == nil {
			err = fmt.Errorf("loadtest: distributed baseline: clean up: %w", cerr)
		}
	}()
	if err := m.Open(ctx); err != nil {
		return nil, fmt.Errorf("loadtest: distributed baseline: %w", err)
	}
	r := loadtest.NewRunner(c.scenario, m.Config.AdminToken, m.URL())
	r.Tokens = verifier
	r.Progress = progress
	r.LedgerWait = c.ledgerWait
	r.RequestTimeout = c.requestTimeout
	rep, err := r.Run(ctx)
	if cerr := m.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("loadtest: distributed baseline: %w", err)
	}
	return rep.AsBaseline(distributedBaseline), nil
}

// removeFleetData deletes the Redis namespace and drops the PostgreSQL schema of cfg.
func removeFleetData(ctx context.Context, cfg Config) error {
	client, err := redis.Dial(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer client.Close()
	return errors.Join(redis.DeleteNamespace(ctx, client, cfg.RedisNamespace),
		postgres.DropSchema(ctx, cfg.PostgresURL, cfg.PostgresSchema))
}

// uniqueName returns prefix followed by 12 random hex digits.
func uniqueName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
