-- The operators' inbox (/cases) lists cases by due time, soonest first, and pages with a keyset
-- on (due time, id); a case with no time limit sorts last, as if due at infinity. This index
-- serves that order directly, so a first page reads its 50 rows, not a million sorted ones.
CREATE INDEX IF NOT EXISTS incidents_due_order_idx
    ON incidents ((coalesce(due_at, 'infinity'::timestamptz)), id);
