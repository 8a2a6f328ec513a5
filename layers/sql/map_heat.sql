-- Cases in the bounding box {env} counted in cells of %(cell)s degrees: one weighted heat-map
-- point per cell, at the mean position of its cases.
SELECT avg(ST_Y(i.geom)) AS lat, avg(ST_X(i.geom)) AS lon, count(*) AS n
FROM incidents i
WHERE i.geom && {env} AND {where}
GROUP BY floor(ST_X(i.geom) / %(cell)s), floor(ST_Y(i.geom) / %(cell)s)
