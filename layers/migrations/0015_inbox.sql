-- The operators' inbox (/cases) lists the cases of one view (a few statuses) by due time,
-- soonest first, and pages with a keyset on (due time, id); a case with no time limit sorts
-- last, as if due at infinity. With the status first, each status of a view is one range of
-- this index read in order (layers.incidents.list_cases merges them), and the capped counts
-- of the views and of the overdue cases read a bounded stretch of it.
CREATE INDEX IF NOT EXISTS incidents_inbox_idx
    ON incidents (status, (coalesce(due_at, 'infinity'::timestamptz)), id);
