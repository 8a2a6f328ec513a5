-- The operators' inbox (/cases) in an operator's scope reads each status of its view in due
-- order and keeps the cases that involve the operator's side (sides && ARRAY[side]), about one
-- in a hundred of a province's. incidents_inbox_idx had only the sort key, so each case the scan
-- passed over was a heap page read to find its sides, or PostgreSQL intersected the side's GIN
-- bitmap with the status's whole range and sorted: either grows with the province, not with the
-- page. This index has the same key and carries the due time and the sides with it, so
-- layers.incidents.list_cases(order="due") reads the ids of a page from the index alone (an
-- index-only scan, the scope checked on each entry) and only the rows it shows from the table.
-- It replaces incidents_inbox_idx (same key: every query that used it can use this one), so a
-- write still updates one inbox index.
CREATE INDEX IF NOT EXISTS incidents_inbox_cover_idx
    ON incidents (status, (coalesce(due_at, 'infinity'::timestamptz)), id) INCLUDE (due_at, sides);
DROP INDEX IF EXISTS incidents_inbox_idx;
