-- User access reviews (issue 14): campaigns and their items, snapshotted from the inventory at
-- creation so later syncs do not move the list under the reviewers. Times are Unix ms.
-- `state`: open | closed. `audit_seq_start` is the seq of the campaign's `review.created` entry:
-- the start of the audit range an auditor verifies.
CREATE TABLE review_campaigns (
    id              TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    reviewer_rule   TEXT    NOT NULL,
    fallback        TEXT    NOT NULL,
    default_action  TEXT    NOT NULL,
    due_at          BIGINT  NOT NULL,
    state           TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    closed_at       BIGINT,
    audit_seq_start BIGINT  NOT NULL
);
CREATE INDEX review_campaigns_state_due ON review_campaigns (state, due_at);

-- One row per (user, access) under review. `decision`: NULL (undecided), keep, revoke.
-- `remediation`: NULL (nothing to do), pending (a revoke waiting for the close), done, flagged
-- (must be removed by hand; `remediation_detail` says why), failed (Okta refused for good).
-- `read_back`: gone | present, with `read_back_at`, after Okta was read again.
CREATE TABLE review_items (
    campaign_id        TEXT    NOT NULL,
    item_id            BIGINT  NOT NULL,
    user_id            TEXT    NOT NULL,
    user_login         TEXT    NOT NULL,
    resource           TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    okta_id            TEXT    NOT NULL,
    resource_set       TEXT    NOT NULL,
    scope              TEXT,
    why                TEXT    NOT NULL,
    grant_id           TEXT,
    grants_90d         BIGINT  NOT NULL,
    last_granted_at    BIGINT,
    reviewer           TEXT    NOT NULL,
    decision           TEXT,
    comment            TEXT,
    decided_by         TEXT,
    decided_at         BIGINT,
    remediation        TEXT,
    remediation_detail TEXT,
    remediated_at      BIGINT,
    read_back          TEXT,
    read_back_at       BIGINT,
    PRIMARY KEY (campaign_id, item_id)
);
CREATE INDEX review_items_reviewer ON review_items (campaign_id, reviewer);
CREATE INDEX review_items_remediation ON review_items (remediation);
