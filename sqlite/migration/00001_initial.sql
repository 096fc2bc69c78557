-- The first schema: the ledger (reservations in their latest state, the SKUs, and the
-- writer's position in the journal) and the customer sessions. Times are unix
-- nanoseconds (UTC); NULL stands for "not set".

-- +goose Up
CREATE TABLE reservations (
    id           TEXT    PRIMARY KEY,
    sku          TEXT    NOT NULL,
    customer_id  TEXT    NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    status       TEXT    NOT NULL CHECK (status IN ('held', 'confirmed', 'released', 'expired')),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    released_at  INTEGER,
    order_ref    TEXT,
    seq          INTEGER NOT NULL -- journal seq of the last event applied to this row
) WITHOUT ROWID;

CREATE INDEX reservations_sku_id ON reservations (sku, id);
CREATE INDEX reservations_customer_id ON reservations (customer_id, id);

CREATE TABLE skus (
    id                 TEXT    PRIMARY KEY,
    stock              INTEGER NOT NULL,
    per_customer_limit INTEGER NOT NULL,
    hold_seconds       INTEGER NOT NULL,
    opens_at           INTEGER,
    updated_at         INTEGER NOT NULL,
    seq                INTEGER NOT NULL
) WITHOUT ROWID;

-- One row: how far the ledger follows the journal, written in the same transaction as
-- the events it counts.
CREATE TABLE ledger_meta (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    last_applied    INTEGER NOT NULL,
    last_event_time INTEGER NOT NULL,
    cursor_key      BLOB -- HMAC key of page cursors, set by the first Open
);
INSERT INTO ledger_meta (id, last_applied, last_event_time) VALUES (1, 0, 0);

CREATE TABLE sessions (
    token_hash  BLOB    PRIMARY KEY CHECK (length(token_hash) = 32), -- SHA-256 of the token
    customer_id TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE sessions;
DROP TABLE ledger_meta;
DROP TABLE skus;
DROP TABLE reservations;
