-- Recurring access review campaigns (issue 14). A template carries `recur` (a cron expression
-- with seconds, UTC) and `next_run_at` (Unix ms); the periodic check creates a run when that time
-- comes, in the transaction that moves `next_run_at` on (a compare-and-set, so one replica wins).
-- A run names its template (`parent_id`) and the scheduled time it was made for (`run_at`);
-- the unique index makes a second run for the same time impossible even if that guard failed.
-- NULLs are distinct in a unique index on both engines, so campaigns that are not runs pass.
ALTER TABLE review_campaigns ADD COLUMN recur TEXT;
ALTER TABLE review_campaigns ADD COLUMN next_run_at BIGINT;
ALTER TABLE review_campaigns ADD COLUMN parent_id TEXT;
ALTER TABLE review_campaigns ADD COLUMN run_at BIGINT;
CREATE UNIQUE INDEX review_campaigns_run ON review_campaigns (parent_id, run_at);
CREATE INDEX review_campaigns_next_run ON review_campaigns (next_run_at);
