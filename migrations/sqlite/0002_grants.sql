-- Grants: one row per grant of one Okta access (group membership, app assignment or admin role)
-- to one user for a bounded time. The row is the record (I3); the Redis expiry index is rebuilt
-- from it. `version` makes every state change a compare-and-set, so two replicas racing on the
-- same grant cannot both win. `standing` is NULL until the broker has looked at Okta under the
-- per-(user, resource) lock: NULL means no Okta write was ever attempted for this grant.
CREATE TABLE grants (
    id                 TEXT    PRIMARY KEY,
    user_id            TEXT    NOT NULL,
    user_login         TEXT    NOT NULL,
    resource           TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    okta_id            TEXT    NOT NULL,
    resource_set       TEXT,
    state              TEXT    NOT NULL,
    standing           INTEGER,
    duration_ms        INTEGER NOT NULL,
    reason             TEXT    NOT NULL,
    requested_by       TEXT    NOT NULL,
    request_id         TEXT,
    end_sessions       INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    activated_at       INTEGER,
    expires_at         INTEGER NOT NULL,
    ended_at           INTEGER,
    role_assignment_id TEXT,
    last_error         TEXT,
    next_retry_at      INTEGER,
    attempts           INTEGER NOT NULL DEFAULT 0,
    ended_by           TEXT,
    end_reason         TEXT,
    version            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX grants_user_access ON grants (user_id, okta_id, state);
CREATE INDEX grants_resource ON grants (resource, created_at);
CREATE INDEX grants_state_expires ON grants (state, expires_at);
