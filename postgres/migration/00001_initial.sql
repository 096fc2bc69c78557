-- The ledger on PostgreSQL: reservations in their latest state, the SKUs' latest
-- settings and every change of them, how far each stream of events is applied, and the
-- cursor key. Every table lives in the schema the DB was opened with (search_path).
--
-- Times are BIGINT unix nanoseconds (UTC), NULL for "not set", as in the SQLite ledger:
-- TIMESTAMPTZ keeps microseconds only, and the ledger must return times exactly as the
-- events carried them (the embedded journal's are nanoseconds; the Redis outbox's are
-- microseconds, which nanoseconds hold too). An int8 is also the cheapest column to copy,
-- compare and index. Read them with to_timestamp(created_at / 1e9).
--
-- Text keys are COLLATE "C": ids, SKUs and customers sort and compare byte by byte, as
-- in SQLite and in Go, so that id order is creation order (reservation ids sort by
-- time) and page cursors mean the same on both backends, whatever the database's
-- collation.
--
-- Every row that events change keeps the seq of the last event applied to it (seq), and
-- an event changes a row only when its seq is higher: applying is idempotent and, per
-- row, independent of the order in which events arrive.

-- +goose Up
CREATE TABLE reservations (
    id           TEXT COLLATE "C" PRIMARY KEY,
    sku          TEXT COLLATE "C" NOT NULL,
    customer_id  TEXT COLLATE "C" NOT NULL,
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    status       TEXT   NOT NULL CHECK (status IN ('held', 'confirmed', 'released', 'expired')),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    confirmed_at BIGINT,
    released_at  BIGINT,
    order_ref    TEXT,
    seq          BIGINT NOT NULL CHECK (seq > 0)
)
-- Half of each page is left free at insert, for the one update that nearly every
-- reservation gets (held -> confirmed, released or expired). Holds created together
-- share a page and often end in the same batch, and an update can reuse the space of
-- dead versions only after their transaction: with the default (100) or 85, most
-- updates found their page full and became non-HOT, adding an entry to each of the
-- three indexes; at 50 nearly all are HOT (heap only), and a batch of events applied
-- 2.6 times faster, for a heap twice the size.
WITH (fillfactor = 50);

CREATE INDEX reservations_sku_id ON reservations (sku, id);
CREATE INDEX reservations_customer_id ON reservations (customer_id, id);

CREATE TABLE skus (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    stock              BIGINT NOT NULL,
    per_customer_limit BIGINT NOT NULL,
    hold_seconds       BIGINT NOT NULL,
    opens_at           BIGINT,
    updated_at         BIGINT NOT NULL,
    seq                BIGINT NOT NULL CHECK (seq > 0)
);

-- Every EventSKUPut, so that revguard verify can tell the stock in force at any instant.
CREATE TABLE sku_history (
    sku                TEXT COLLATE "C" NOT NULL,
    seq                BIGINT NOT NULL,
    time               BIGINT NOT NULL,
    stock              BIGINT NOT NULL,
    per_customer_limit BIGINT NOT NULL,
    hold_seconds       BIGINT NOT NULL,
    opens_at           BIGINT,
    PRIMARY KEY (sku, seq)
);

-- How far the events are applied, one row per stream: the low byte of the seq, which is
-- the shard of a Redis outbox event (seq = shardSeq<<8 | shard). Writers of different
-- shards then never wait for each other's row lock; LastApplied is the highest of all.
CREATE TABLE ledger_streams (
    stream          SMALLINT PRIMARY KEY CHECK (stream BETWEEN 0 AND 255),
    last_applied    BIGINT NOT NULL,
    last_event_time BIGINT NOT NULL
);

-- One row, written by the first Open (INSERT ... ON CONFLICT DO NOTHING): the random
-- HMAC key of page cursors, the same for every node.
CREATE TABLE ledger_meta (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    cursor_key BYTEA NOT NULL CHECK (length(cursor_key) = 32)
);

-- +goose Down
DROP TABLE ledger_meta;
DROP TABLE ledger_streams;
DROP TABLE sku_history;
DROP TABLE skus;
DROP TABLE reservations;
