-- The change log (revguard.ChangeLog): every journaled event as the event stream and
-- the webhooks show it, with the facts derived from it (sold out, restocked), each
-- under its own seq; the counts of each SKU the log derives them from; how far it
-- follows the journal. And the webhook endpoints, each with its place in the log.
-- Times are unix nanoseconds (UTC).

-- +goose Up
CREATE TABLE changes (
    seq  INTEGER PRIMARY KEY, -- the change log's own seq (evt_<seq>)
    type TEXT    NOT NULL,
    sku  TEXT    NOT NULL,
    time INTEGER NOT NULL,
    body BLOB    NOT NULL     -- the JSON document delivered
);

CREATE TABLE change_skus (
    sku                TEXT    PRIMARY KEY,
    stock              INTEGER NOT NULL,
    held               INTEGER NOT NULL,
    sold               INTEGER NOT NULL,
    per_customer_limit INTEGER NOT NULL,
    hold_seconds       INTEGER NOT NULL,
    opens_at           INTEGER
) WITHOUT ROWID;

CREATE TABLE change_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    journal_seq INTEGER NOT NULL, -- the last journal event turned into changes
    last_seq    INTEGER NOT NULL  -- the last change's seq
);
INSERT INTO change_meta (id, journal_seq, last_seq) VALUES (1, 0, 0);

CREATE TABLE webhooks (
    id              TEXT    PRIMARY KEY,
    url             TEXT    NOT NULL,
    types           TEXT    NOT NULL, -- comma-separated; empty for every type
    secret          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status = 'active' OR status = 'paused'),
    cursor          INTEGER NOT NULL,
    failures        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    last_error      TEXT    NOT NULL,
    last_success_at INTEGER,
    paused_at       INTEGER
) WITHOUT ROWID;

-- +goose Down
DROP TABLE webhooks;
DROP TABLE change_meta;
DROP TABLE change_skus;
DROP TABLE changes;
