-- The waiting rooms' audit log (revguard.RoomLog): every setting put, join, the draw
-- (its seed, then one row per pre-queue customer with the place the draw gave it),
-- admission, use of an admission, closing and reopening, in the order they happened.
-- The embedded waiting room rebuilds its state from it at start, and revguard export
-- shows it, so that a shop can reproduce the draw from the seed and the join order.

-- +goose Up
CREATE TABLE room_log (
    seq                INTEGER PRIMARY KEY, -- assigned in append order
    sku                TEXT    NOT NULL,
    type               INTEGER NOT NULL,    -- revguard.RoomRecordType
    time               INTEGER NOT NULL,    -- unix nanoseconds (UTC)
    customer_id        TEXT,
    ticket             INTEGER,
    until              INTEGER,
    seed               BLOB,
    pre_queue_seconds  INTEGER,
    admit_per_second   INTEGER,
    admission_seconds  INTEGER
);
CREATE INDEX room_log_sku ON room_log (sku, seq);

-- +goose Down
DROP TABLE room_log;
