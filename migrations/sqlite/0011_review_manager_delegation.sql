-- Access reviews (issue 14), the manager rule: the Okta profile's `managerId` (the manager's
-- login or id, as the org fills it) as the inventory sync read it. `manager` (0005) is the
-- display name; a name names no one unambiguously, so the rule prefers this column.
ALTER TABLE inventory_users ADD COLUMN manager_id TEXT;

-- Delegation: the reviewer an item was last handed away from (NULL: never delegated). The
-- current reviewer stays in `reviewer`; the full chain is in the `review.delegated` entries.
ALTER TABLE review_items ADD COLUMN delegated_from TEXT;
