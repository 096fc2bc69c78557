-- Indexes that the first schema lacked: PurgeExpired deletes sessions by expiry (a full
-- scan of every live session without this index), and GET /v1/orders?status=held pages
-- by status in id order.

-- +goose Up
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX reservations_status_id ON reservations (status, id);

-- +goose Down
DROP INDEX reservations_status_id;
DROP INDEX sessions_expires_at;
