-- Every setting a SKU was ever put with, not only its last one (skus): the stock in
-- force at each instant, which revguard verify needs to check that the order history
-- never shows more units held or sold than the stock. One row per EventSKUPut, keyed
-- by the SKU and the event's seq, written in the transaction that applies the event.
--
-- A ledger written before this migration knows only each SKU's last settings. They
-- are copied here, dated back to the SKU's first reservation when that is earlier
-- than the put: verify then checks the SKU's whole history against its last stock,
-- so a stock lowered since can show as an overlap that the real history lacks.

-- +goose Up
CREATE TABLE sku_history (
    sku                TEXT    NOT NULL,
    seq                INTEGER NOT NULL, -- journal seq of the put
    time               INTEGER NOT NULL, -- unix nanoseconds (UTC) of the put
    stock              INTEGER NOT NULL,
    per_customer_limit INTEGER NOT NULL,
    hold_seconds       INTEGER NOT NULL,
    opens_at           INTEGER,
    PRIMARY KEY (sku, seq)
) WITHOUT ROWID;
INSERT INTO sku_history (sku, seq, time, stock, per_customer_limit, hold_seconds, opens_at)
    SELECT id, seq,
        min(updated_at, coalesce((SELECT min(created_at) FROM reservations WHERE sku = skus.id), updated_at)),
        stock, per_customer_limit, hold_seconds, opens_at
    FROM skus;

-- +goose Down
DROP TABLE sku_history;
