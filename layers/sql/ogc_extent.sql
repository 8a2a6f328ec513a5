-- A collection's extent: the bounding box of its published geometries (exact below 100,000
-- rows, PostGIS's estimate from the planner statistics above) and the first and last value of
-- its temporal column (an index answers min and max on the plain table). Uncorrelated
-- subqueries run only when their branch is taken; OFFSET 0 keeps the box computed once.
SELECT ST_XMin(s.b) AS xmin, ST_YMin(s.b) AS ymin, ST_XMax(s.b) AS xmax, ST_YMax(s.b) AS ymax,
       s.t0, s.t1
FROM (
    SELECT CASE
               WHEN (SELECT c.reltuples FROM pg_class c WHERE c.oid = to_regclass({relation})) > 100000
               THEN ST_EstimatedExtent({relation}, {column})::box2d
               ELSE (SELECT ST_Extent({geom}) FROM {source})
           END AS b,
           (SELECT min({temporal}) FROM {table}) AS t0,
           (SELECT max({temporal}) FROM {table}) AS t1
    OFFSET 0
) s
