-- The waiting rooms' audit log in distributed mode: the records of each room's Redis
-- stream (T:rlog:<sku>), copied here by the nodes, so that the ledger keeps them for
-- good: every setting, join, the draw (its seed, then each customer's place),
-- admission, use, closing and reopening. seq is the entry's position in its stream
-- (the stream id's milliseconds << 20 | its sequence), so that copies from several
-- nodes, repeated or overlapping, insert each record once and read back in order.

-- +goose Up
CREATE TABLE room_log (
    sku               TEXT COLLATE "C" NOT NULL,
    seq               BIGINT   NOT NULL,
    type              SMALLINT NOT NULL,
    time              BIGINT   NOT NULL,
    customer_id       TEXT COLLATE "C",
    ticket            BIGINT,
    until             BIGINT,
    seed              BYTEA,
    pre_queue_seconds BIGINT,
    admit_per_second  BIGINT,
    admission_seconds BIGINT,
    PRIMARY KEY (sku, seq)
);

-- +goose Down
DROP TABLE room_log;
