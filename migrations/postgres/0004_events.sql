-- The Okta event hook inbox: every delivered event, stored (deduplicated on Okta's `uuid`)
-- before the delivery is answered, then processed by a leased worker. `user_key` orders one
-- user's events by `published` (Unix ms); events about nothing the broker manages are kept as
-- `dropped` rows without a body, only so a redelivery is recognised. `state`: pending,
-- processing (leased by `lease_owner` until `lease_until`), done, dead, dropped.
CREATE TABLE okta_events (
    uuid            TEXT    PRIMARY KEY,
    event_type      TEXT    NOT NULL,
    published       BIGINT  NOT NULL,
    user_key        TEXT    NOT NULL,
    body            TEXT,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    outcome         TEXT,
    received_at     BIGINT  NOT NULL,
    processed_at    BIGINT
);
CREATE INDEX okta_events_due ON okta_events (state, next_attempt_at);
CREATE INDEX okta_events_user ON okta_events (user_key, state, published);
