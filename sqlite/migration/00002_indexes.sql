-- An index that the first schema lacked: PurgeExpired deletes sessions by expiry, which
-- without it scans every live session under the write lock.
--
-- There is deliberately no index on reservations.status: every status change would
-- move an entry in it, on the ledger's write path, for the sake of one admin filter,
-- which pages through the id order (or the sku or customer index) instead.

-- +goose Up
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- +goose Down
DROP INDEX sessions_expires_at;
