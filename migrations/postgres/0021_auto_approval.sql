-- How auto_approve went for a request beyond the people it names (on-call source and
-- schedule that approved it, or why none could): JSON, NULL for most requests.
ALTER TABLE requests ADD COLUMN auto_approval TEXT;
