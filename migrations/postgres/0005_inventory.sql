-- Inventory (issue 12, PostgreSQL twin of the SQLite migration): what the periodic sync last saw in Okta, for drift reconciliation,
-- access reviews and the console. Times are Unix ms. Rows are replaced per Okta object in one
-- transaction together with the object's `members_listed_at`, so a crash mid-sync leaves each
-- object either fully old or fully new, and an object whose listing did not commit is listed
-- again by the next run (its stored `last_membership_updated` did not move).
CREATE TABLE inventory_users (
    user_id     TEXT    PRIMARY KEY,
    login       TEXT    NOT NULL,
    email       TEXT,
    first_name  TEXT,
    last_name   TEXT,
    department  TEXT,
    manager     TEXT,
    status      TEXT    NOT NULL,
    first_seen  BIGINT  NOT NULL,
    last_seen   BIGINT  NOT NULL
);
CREATE INDEX inventory_users_login ON inventory_users (login);

-- Groups and apps (kind `okta_group` / `okta_app`). `last_membership_updated` (groups, Unix ms)
-- is Okta's value at the last member listing that committed: the delta key.
CREATE TABLE inventory_objects (
    kind                    TEXT    NOT NULL,
    okta_id                 TEXT    NOT NULL,
    name                    TEXT    NOT NULL,
    object_type             TEXT    NOT NULL,
    last_membership_updated BIGINT ,
    members_listed_at       BIGINT ,
    first_seen              BIGINT  NOT NULL,
    last_seen               BIGINT  NOT NULL,
    PRIMARY KEY (kind, okta_id)
);

-- One row per (user, access) seen in Okta. `why`: `grant` (a live grant of ours explains it,
-- `grant_id`), `standing` (allowed without a grant: not jit_only, allow_standing, inherited
-- through a group, or recorded standing by a grant) or `unexplained`. `scope` is the app
-- assignment's scope or the role assignment's id. `prev_listed_at`: when the object had last
-- been listed before this row first appeared (NULL: never), i.e. the latest time the user is
-- known to have been without the access.
CREATE TABLE inventory_access (
    user_id        TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    okta_id        TEXT    NOT NULL,
    resource_set   TEXT    NOT NULL DEFAULT '',
    scope          TEXT,
    why            TEXT    NOT NULL,
    grant_id       TEXT,
    first_seen     BIGINT  NOT NULL,
    last_seen      BIGINT  NOT NULL,
    prev_listed_at BIGINT ,
    PRIMARY KEY (user_id, kind, okta_id, resource_set)
);
CREATE INDEX inventory_access_object ON inventory_access (kind, okta_id, resource_set);

-- Sync runs: one row each, written `running` at start and finished with counts, Okta calls by
-- bucket, warnings and the drift report (JSON text).
CREATE TABLE sync_runs (
    id          TEXT    PRIMARY KEY,
    started_at  BIGINT  NOT NULL,
    ended_at    BIGINT ,
    mode        TEXT    NOT NULL,
    dry_run     BIGINT  NOT NULL,
    outcome     TEXT    NOT NULL,
    fence       BIGINT  NOT NULL,
    counts      TEXT    NOT NULL DEFAULT '{}',
    okta_calls  TEXT    NOT NULL DEFAULT '{}',
    warnings    TEXT    NOT NULL DEFAULT '[]',
    report      TEXT    NOT NULL DEFAULT '[]',
    error       TEXT
);
CREATE INDEX sync_runs_started ON sync_runs (started_at);

-- Named integers: `fence` (the highest Redis fencing token that has written; a write from a
-- lower one is refused), `users_since` (the delta cursor for users), `runs_since_full`.
CREATE TABLE sync_state (
    name  TEXT    PRIMARY KEY,
    value BIGINT  NOT NULL
);
INSERT INTO sync_state (name, value) VALUES ('fence', 0), ('users_since', 0), ('runs_since_full', 0);
