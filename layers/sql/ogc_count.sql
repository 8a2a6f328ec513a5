-- numberMatched and the last change over an items selection. The count stops at the cap
-- (%(_cap)s rows), so a huge selection costs a bounded scan.
SELECT count(*) AS n, max(s.u) AS modified
FROM (
    SELECT {updated} AS u
    FROM {table}
    WHERE {where}
    LIMIT %(_cap)s
) s
