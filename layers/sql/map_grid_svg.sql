-- The dashboard's hot-spot map: every grid with its number of cases (those matching {where})
-- and its outline as SVG path data in EPSG:4544 metres (CGCS2000 Gauss-Kruger, CM 105E),
-- simplified to %(tol)s metres; then the district outlines and the border line on top.
WITH counts AS (
    SELECT i.grid_code, count(*) AS n,
           count(*) FILTER (WHERE i.status = ANY (%(open)s)) AS open
    FROM incidents i
    WHERE i.grid_code IS NOT NULL AND {where}
    GROUP BY i.grid_code
)
SELECT 'grid' AS kind, g.code, g.name, g.side,
       coalesce(c.n, 0) AS n, coalesce(c.open, 0) AS open,
       ST_AsSVG(ST_SimplifyPreserveTopology(ST_Transform(g.geom, 4544), %(tol)s), 0, 0) AS path
FROM grids g
LEFT JOIN counts c ON c.grid_code = g.code
UNION ALL
SELECT 'district', a.code, a.name, a.side, 0, 0,
       ST_AsSVG(ST_SimplifyPreserveTopology(ST_Transform(ST_Boundary(a.geom), 4544), %(tol)s), 0, 0)
FROM areas a
WHERE a.level = 'district'
UNION ALL
SELECT 'border', b.id, b.id, NULL, 0, 0,
       ST_AsSVG(ST_SimplifyPreserveTopology(ST_Transform(b.geom, 4544), %(tol)s), 0, 0)
FROM border b
WHERE b.kind = 'line'
ORDER BY 1 DESC, 2
