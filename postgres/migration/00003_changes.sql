-- The change log in distributed mode (revguard.StreamChangeLog): every event of the
-- inventory's outbox streams as the event stream and the webhooks show it, with the
-- facts derived from it (sold out, restocked), each under its own seq; the counts of
-- each SKU the log derives them from; how far it has read each shard's stream. One
-- node at a time writes it (under an advisory lock); every append checks and bumps
-- change_meta.version, so that a second writer can never append the same events.
-- And the webhook endpoints, each with its place in the log. Times are unix
-- nanoseconds (UTC).

-- +goose Up
CREATE TABLE changes (
    seq  BIGINT PRIMARY KEY,           -- the change log's own seq (evt_<seq>)
    type TEXT COLLATE "C" NOT NULL,
    sku  TEXT COLLATE "C" NOT NULL,
    time BIGINT NOT NULL,
    body BYTEA  NOT NULL               -- the JSON document delivered
);
CREATE INDEX changes_time ON changes (time);

CREATE TABLE change_skus (
    sku                TEXT COLLATE "C" PRIMARY KEY,
    stock              BIGINT NOT NULL,
    held               BIGINT NOT NULL,
    sold               BIGINT NOT NULL,
    per_customer_limit BIGINT NOT NULL,
    hold_seconds       BIGINT NOT NULL,
    opens_at           BIGINT
);

CREATE TABLE change_positions (
    shard     INTEGER PRIMARY KEY,
    stream_id TEXT COLLATE "C" NOT NULL -- the last outbox entry turned into changes
);

CREATE TABLE change_meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL,            -- the last change's seq
    version  BIGINT NOT NULL             -- bumped by every append
);
INSERT INTO change_meta (id, last_seq, version) VALUES (1, 0, 0);

CREATE TABLE webhooks (
    id              TEXT COLLATE "C" PRIMARY KEY,
    url             TEXT    NOT NULL,
    types           TEXT    NOT NULL, -- comma-separated; empty for every type
    secret          TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    status          TEXT    NOT NULL CHECK (status = 'active' OR status = 'paused'),
    cursor          BIGINT  NOT NULL,
    failures        INTEGER NOT NULL,
    next_attempt_at BIGINT,
    last_error      TEXT    NOT NULL,
    last_success_at BIGINT,
    paused_at       BIGINT
);

-- +goose Down
DROP TABLE webhooks;
DROP TABLE change_meta;
DROP TABLE change_positions;
DROP TABLE change_skus;
DROP TABLE changes;
