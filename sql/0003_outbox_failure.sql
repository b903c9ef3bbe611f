-- Outbox messages the broker refused for good (too large, an invalid topic, ...). A refusal
-- is a fact added once; the relay skips these messages so that they never hold up the ones
-- behind them, and an alert asks a person to look.
CREATE TABLE outbox_failure (
    message_id text PRIMARY KEY REFERENCES outbox (message_id),
    reason     text NOT NULL CHECK (reason <> ''),
    failed_at  timestamptz NOT NULL
);
