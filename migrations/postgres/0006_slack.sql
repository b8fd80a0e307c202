-- Slack: inbound delivery de-duplication and the bookkeeping of what was posted where.
--
-- slack_deliveries: the v0 signature of every verified inbound request (commands, button
-- clicks, modal submissions). A second delivery with the same signature (same timestamp and
-- body) is a replay and changes nothing. Rows older than the 5-minute window are pruned: a
-- replay that old fails the timestamp check first.
CREATE TABLE slack_deliveries (
    signature   TEXT    PRIMARY KEY,
    received_at BIGINT  NOT NULL
);
CREATE INDEX slack_deliveries_received ON slack_deliveries (received_at);

-- The approval message of a request: chat.update needs the channel id and ts it was posted at.
CREATE TABLE slack_messages (
    request_id  TEXT    PRIMARY KEY,
    channel     TEXT    NOT NULL,
    ts          TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Notifications already posted (DMs, alerts, reminders): a redelivery after a crash finds its
-- row and posts nothing a second time.
CREATE TABLE slack_sent (
    notification_id TEXT   PRIMARY KEY,
    channel         TEXT   NOT NULL,
    ts              TEXT   NOT NULL,
    sent_at         BIGINT NOT NULL
);
