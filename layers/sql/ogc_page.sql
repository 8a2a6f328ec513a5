-- One page's fingerprint, read before its rows: how many (up to the limit, plus one to know
-- whether another page follows), the last change among them, and the first and last keys
-- (as text, converted for those two rows only) that bound the rows to stream. For a page
-- that only the keyset bounds: three walks along the page key's index (index-only for the
-- key and updated columns), cheaper together than one materialised CTE of the page (a
-- tuplestore write per row, about 3x the cost). With a filter, ogc_page_filtered.sql.
SELECT s.c, s.u,
       (SELECT {keys_text} FROM (
            SELECT {keys} FROM {table} WHERE {where} ORDER BY {order} LIMIT 1
        ) f) AS first_key,
       (SELECT {keys_text} FROM (
            SELECT {keys} FROM {table} WHERE {where} ORDER BY {order}
            OFFSET greatest(least(s.c, %(_limit)s) - 1, 0) LIMIT 1
        ) l) AS last_key
FROM (
    SELECT count(*) AS c, max(u) AS u
    FROM (SELECT {updated} AS u FROM {table} WHERE {where} ORDER BY {order} LIMIT %(_limit_more)s) p
) s
