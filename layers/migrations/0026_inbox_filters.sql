-- The operators' inbox filtered by mechanism and severity (a command centre's usual question:
-- "the joint-defence cases at red"). With only incidents_inbox_idx, each status of the view
-- was its whole range of that index, intersected with the other filters' bitmaps, to find
-- the few cases that match. Here each status of the view under those two filters is one range
-- already in due order, so list_cases(order="due") reads only the cases it shows, and the
-- case API's filtered list gains the same.
CREATE INDEX IF NOT EXISTS incidents_inbox_filters_idx
    ON incidents (mechanism, severity, status, (coalesce(due_at, 'infinity'::timestamptz)), id);
