-- One page's fingerprint when a filter selects the rows (bbox, time, properties, CQL2): as
-- ogc_page.sql, but the filtered page is read once into a CTE, since walking it three times
-- would evaluate the filter three times (2.5x the time for a small bbox).
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
