-- The open cases that layer changes can reach (see migration 0010), staged into the temp table
-- _reroute_candidates for the COPY out of reroute_cases.sql:
--
-- - every case within `reach_m` (the border zone plus the service-area tolerance) of what a
--   change altered: the part of a feature that moved (the symmetric difference of its old and
--   new geometry), or all of a feature added, removed or changed in more than its geometry;
-- - every case inside a joint grid that an altered area touches (its spans may change);
-- - every case whose stored routing reaches farther than `reach_m` (routing_reach());
-- - with `teams`, every cross-boundary case (only those read their teams).
--
-- Metres become degrees per piece with the cosine at its highest latitude plus one degree: a
-- radius that surely contains the metric one (as layers.locate.degrees_covering).
-- Parameters: ids (the layer_changes rows read), reach_m, teams.
WITH changed AS MATERIALIZED (
    SELECT c.layer,
           CASE WHEN c.attrs_changed OR c.old_geom IS NULL OR c.new_geom IS NULL
                THEN coalesce(ST_Collect(c.old_geom, c.new_geom), c.old_geom, c.new_geom)
                ELSE ST_SymDifference(c.old_geom, c.new_geom) END AS geom
    FROM layer_changes c
    WHERE c.id = ANY (%(ids)s) AND c.layer <> 'teams'
),
joint AS (
    SELECT g.geom FROM grids g JOIN changed c ON c.layer = 'areas' AND ST_Intersects(g.geom, c.geom)
    WHERE g.joint
),
pieces AS MATERIALIZED (
    SELECT p.geom,
           %(reach_m)s / (110574.0 * cos(radians(least(
               greatest(abs(ST_YMin(p.geom)), abs(ST_YMax(p.geom))) + 1.0, 89.0)))) * 1.01 AS deg
    FROM (SELECT ST_Subdivide((ST_Dump(x.geom)).geom, 128) AS geom
          FROM (SELECT geom FROM changed UNION ALL SELECT geom FROM joint) x
          WHERE x.geom IS NOT NULL AND NOT ST_IsEmpty(x.geom)) p
)
INSERT INTO _reroute_candidates (id)
SELECT i.id FROM pieces p
JOIN incidents i ON ST_DWithin(i.geom, p.geom, p.deg)
WHERE jointgrid_is_open(i.status)
UNION
SELECT i.id FROM incidents i
WHERE jointgrid_is_open(i.status)
  AND routing_reach(i.contacts, i.extent, i.input, i.distance_to_border_m) > %(reach_m)s
UNION
SELECT i.id FROM incidents i
WHERE %(teams)s AND i.cross_boundary
  AND jointgrid_is_open(i.status)
