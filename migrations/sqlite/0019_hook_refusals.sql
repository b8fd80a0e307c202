-- Okta event hook requests the broker refused (verification or delivery), counted per reason
-- so that `jit-broker okta event-hook status` can say when deliveries are being refused. One
-- row per reason, not per request: an unauthenticated flood costs one upsert per second per
-- replica, never a row per request. Never holds a secret or a header's value.
CREATE TABLE event_hook_refusals (
    reason   TEXT PRIMARY KEY,
    count    BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at  BIGINT NOT NULL
);
