-- One page's fingerprint, read before its rows: how many (up to the limit, plus one to know
-- whether another page follows), the last change among them, and the first and last keys
-- (as text, converted for those two rows only) that bound the rows to stream. The keyset
-- order follows the page key's index.
WITH page AS MATERIALIZED (
    SELECT row_number() OVER (ORDER BY {order}) AS rn, {keys}, {updated} AS u
    FROM {table}
    WHERE {where}
    ORDER BY {order}
    LIMIT %(_limit_more)s
),
s AS (SELECT count(*) AS c, max(u) AS u FROM page)
SELECT s.c, s.u,
       (SELECT {keys_text} FROM page WHERE rn = 1) AS first_key,
       (SELECT {keys_text} FROM page WHERE rn = least(s.c, %(_limit)s)) AS last_key
FROM s
