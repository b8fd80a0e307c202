-- Requests and approvals (flows 1 to 3), and the notifications every channel delivers.
--
-- A request is the durable intent: an `approved` access request with no grant yet is owed one,
-- and the recovery task creates it (the unique index on grants.request_id makes that creation
-- happen once however many replicas try). Every decision bumps the request's `version`, so two
-- approvals committing at once cannot both miss each other (write skew): one of them retries and
-- counts both.
CREATE TABLE requests (
    id               TEXT    PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    user_login       TEXT    NOT NULL,
    resource         TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    grant_id         TEXT,
    duration_ms      INTEGER NOT NULL,
    reason           TEXT    NOT NULL,
    ticket           TEXT,
    requested_by     TEXT    NOT NULL,
    channel          TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    break_glass      INTEGER NOT NULL DEFAULT 0,
    review_pending   INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    decided_at       INTEGER,
    end_reason       TEXT,
    version          INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX requests_one_pending ON requests (user_id, resource) WHERE state = 'pending';
CREATE INDEX requests_state_expires ON requests (state, expires_at);
CREATE INDEX requests_user ON requests (user_login, created_at);
CREATE INDEX requests_resource ON requests (resource, created_at);

-- One row per person per request: a person counts once, and a double click is the same row.
CREATE TABLE request_decisions (
    request_id  TEXT    NOT NULL,
    approver    TEXT    NOT NULL,
    stage       INTEGER NOT NULL,
    decision    TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    comment     TEXT    NOT NULL,
    decided_at  INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver)
);

-- An approved access request makes exactly one grant.
CREATE UNIQUE INDEX grants_request ON grants (request_id);

-- What a channel must tell people, derived once from the audit log (or from time, for reminders)
-- and delivered per channel from `deliveries`. `id` is the outbound webhook-id.
CREATE TABLE notifications (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    dedupe_key  TEXT    NOT NULL UNIQUE,
    request_id  TEXT,
    grant_id    TEXT,
    audit_seq   INTEGER,
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX notifications_request ON notifications (request_id);
CREATE INDEX notifications_grant ON notifications (grant_id);

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id  TEXT    NOT NULL,
    channel          TEXT    NOT NULL,
    partition_key    TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    UNIQUE (notification_id, channel)
);
CREATE INDEX deliveries_pending ON deliveries (channel, state, id);

-- One replica delivers a channel at a time (its order is the order of `deliveries.id`).
CREATE TABLE channel_leases (
    channel   TEXT    PRIMARY KEY,
    holder    TEXT    NOT NULL,
    until_ms  INTEGER NOT NULL
);

-- How far the notifier has read the audit log. Starts at the current head: an upgrade does not
-- replay history as notifications.
CREATE TABLE notify_cursor (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL
);
INSERT INTO notify_cursor (id, seq) SELECT 1, seq FROM audit_head WHERE id = 1;

-- Idempotency for signed inbound callbacks: the first answer to a webhook-id is the answer.
CREATE TABLE webhook_receipts (
    source      TEXT    NOT NULL,
    webhook_id  TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    status      INTEGER,
    body        TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (source, webhook_id)
);
