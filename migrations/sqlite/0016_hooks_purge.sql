-- Signed-callback receipts are purged once their replay window has passed (a tracked task,
-- chunked deletes by receipt time): this index finds them without a scan.
CREATE INDEX webhook_receipts_created ON webhook_receipts (created_at);
