-- The status CHECK of the first schema, `status IN ('held', 'confirmed', 'released',
-- 'expired')`, makes SQLite build a temporary b-tree of the four values for every row
-- it inserts or updates (a constant IN list of more than two values is evaluated with
-- an ephemeral table), about a tenth of the ledger's apply time. The same rule written
-- as comparisons costs nothing. SQLite cannot change a CHECK in place: the table is
-- rebuilt, with the same columns and indexes.

-- +goose Up
CREATE TABLE reservations_new (
    id           TEXT    PRIMARY KEY,
    sku          TEXT    NOT NULL,
    customer_id  TEXT    NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    status       TEXT    NOT NULL CHECK (status = 'held' OR status = 'confirmed' OR status = 'released' OR status = 'expired'),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    released_at  INTEGER,
    order_ref    TEXT,
    seq          INTEGER NOT NULL -- journal seq of the last event applied to this row
) WITHOUT ROWID;
INSERT INTO reservations_new
    (id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq)
    SELECT id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq
    FROM reservations ORDER BY id;
DROP TABLE reservations;
ALTER TABLE reservations_new RENAME TO reservations;
CREATE INDEX reservations_sku_id ON reservations (sku, id);
CREATE INDEX reservations_customer_id ON reservations (customer_id, id);

-- +goose Down
CREATE TABLE reservations_old (
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
    seq          INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO reservations_old
    (id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq)
    SELECT id, sku, customer_id, quantity, status, created_at, expires_at, confirmed_at, released_at, order_ref, seq
    FROM reservations ORDER BY id;
DROP TABLE reservations;
ALTER TABLE reservations_old RENAME TO reservations;
CREATE INDEX reservations_sku_id ON reservations (sku, id);
CREATE INDEX reservations_customer_id ON reservations (customer_id, id);
