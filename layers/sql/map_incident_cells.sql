-- Incidents in the bounding box {env} counted in square cells of %(cell)s degrees, anchored to
-- the world grid so that a cell keeps its identity while the map pans. Each cell is drawn at
-- the mean position of its cases, with the count per mechanism ('none' = single-side cases),
-- how many are overdue (open and past due) and how many were escalated.
WITH hits AS (
    SELECT i.geom,
           floor(ST_X(i.geom) / %(cell)s)::bigint AS gx,
           floor(ST_Y(i.geom) / %(cell)s)::bigint AS gy,
           coalesce(i.mechanism, 'none') AS mechanism,
           (i.status = ANY (%(open)s) AND i.due_at < %(now)s) AS overdue,
           (i.status = ANY (%(open)s) AND i.escalation_level > 0) AS escalated
    FROM incidents i
    WHERE i.geom && {env} AND {where}
),
per_mechanism AS (
    SELECT gx, gy, json_object_agg(mechanism, n ORDER BY mechanism) AS mechanisms,
           string_agg(mechanism || n, ',' ORDER BY mechanism) AS signature
    FROM (SELECT gx, gy, mechanism, count(*) AS n FROM hits GROUP BY gx, gy, mechanism) m
    GROUP BY gx, gy
),
cells AS (
    SELECT gx, gy, count(*) AS n,
           count(*) FILTER (WHERE overdue) AS overdue,
           count(*) FILTER (WHERE escalated) AS escalated,
           avg(ST_X(geom)) AS x, avg(ST_Y(geom)) AS y
    FROM hits
    GROUP BY gx, gy
)
SELECT 'cell:' || c.gx || ':' || c.gy AS fid,
       ST_SetSRID(ST_MakePoint(c.x, c.y), 4326) AS geom,
       json_build_object(
           'kind', 'cell',
           'key', 'cell:' || c.gx || ':' || c.gy || ':' || c.overdue || ':' || c.escalated
                  || ':' || m.signature,
           'count', c.n,
           'overdue', c.overdue,
           'escalated', c.escalated,
           'mechanisms', m.mechanisms
       ) AS props
FROM cells c
JOIN per_mechanism m USING (gx, gy)
