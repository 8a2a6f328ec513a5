-- Location facts for one point, in one round trip. Parameters:
--   lon, lat      WGS84 degrees
--   radius_deg    a degree radius that surely contains `radius_m` at this latitude (index prefilter)
--   radius_m      metres: chiefs within this distance (the border-zone width)
--   mechanism     teams serving this mechanism (NULL: any team)
--   extent        EWKB of an optional extent (NULL: none)
--   category, dup_radius_m, dup_radius_deg, dup_since: open cases that may be duplicates
WITH p AS (
    SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g,
           ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography AS gg
),
sides AS (
    SELECT d.code, d.name, ST_Intersects(d.geom, p.g) AS contains,
           ST_Distance(d.geom::geography, p.gg) AS distance_m
    FROM areas d, p
    WHERE d.level = 'district'
),
village AS (
    SELECT v.code, v.name, v.parent_code
    FROM areas v, p
    WHERE v.level = 'village' AND ST_Intersects(v.geom, p.g)
    ORDER BY v.code
    LIMIT 1
),
chain AS (
    SELECT d.code, d.name, d.level, 0 AS ord FROM areas d, village v WHERE d.code = left(v.code, 6)
    UNION ALL
    SELECT t.code, t.name, t.level, 1 FROM areas t, village v WHERE t.code = v.parent_code
    UNION ALL
    SELECT v.code, v.name, 'village', 2 FROM village v
),
grids_here AS (
    SELECT g.code, g.name, g.side, g.village_code, g.joint, g.chief_name, g.chief_phone,
           true AS contains, 0.0::float8 AS distance_m
    FROM grids g, p
    WHERE ST_Intersects(g.geom, p.g)
),
nearest_grids AS (
    SELECT n.* FROM sides s CROSS JOIN LATERAL (
        SELECT c.code, c.name, c.side, c.village_code, c.joint, c.chief_name, c.chief_phone,
               false AS contains, ST_Distance(c.geom::geography, p.gg) AS distance_m
        FROM (SELECT g.* FROM grids g, p WHERE g.side = s.code ORDER BY g.geom <-> p.g LIMIT 5) c, p
        ORDER BY 9, 1
        LIMIT 1
    ) n
),
police_here AS (
    SELECT pg.code, pg.name, pg.side, pg.station, pg.officer_name, pg.officer_phone,
           true AS contains, 0.0::float8 AS distance_m
    FROM police_grids pg, p
    WHERE ST_Intersects(pg.geom, p.g)
),
nearest_police AS (
    SELECT n.* FROM sides s CROSS JOIN LATERAL (
        SELECT c.code, c.name, c.side, c.station, c.officer_name, c.officer_phone,
               false AS contains, ST_Distance(c.geom::geography, p.gg) AS distance_m
        FROM (SELECT pg.* FROM police_grids pg, p WHERE pg.side = s.code
              ORDER BY pg.geom <-> p.g LIMIT 5) c, p
        ORDER BY 8, 1
        LIMIT 1
    ) n
),
team_ids AS (
    SELECT t.code FROM teams t, p
    WHERE ST_Intersects(t.patrol_area, p.g)
      AND (%(mechanism)s::text IS NULL OR %(mechanism)s::text = ANY (t.mechanisms))
    UNION
    SELECT c.code FROM (
        SELECT t.code FROM teams t, p
        WHERE (%(mechanism)s::text IS NULL OR %(mechanism)s::text = ANY (t.mechanisms))
        ORDER BY t.base <-> p.g
        LIMIT 10
    ) c
),
teams_near AS (
    SELECT t.code, t.name, t.kind, t.side, t.sides, t.mechanisms, t.roster,
           ST_Intersects(t.patrol_area, p.g) AS covers,
           ST_Distance(t.base::geography, p.gg) AS base_distance_m
    FROM teams t JOIN team_ids USING (code), p
),
chiefs_near AS (
    SELECT c.code, c.role, c.side, c.name, c.phone, c.feature_name,
           ST_Distance(c.geom::geography, p.gg) AS distance_m
    FROM chiefs c, p
    WHERE c.geom && ST_Expand(p.g, %(radius_deg)s)
      AND ST_DWithin(c.geom::geography, p.gg, %(radius_m)s)
),
extent AS (
    SELECT ST_GeomFromEWKB(%(extent)s::bytea) AS g
),
extent_sides AS (
    SELECT array_agg(d.code ORDER BY d.code) AS codes
    FROM areas d, extent e
    WHERE e.g IS NOT NULL AND d.level = 'district' AND ST_Intersects(d.geom, e.g)
)
SELECT json_build_object(
    'sides', (SELECT coalesce(json_agg(s ORDER BY s.code), '[]') FROM sides s),
    'chain', (SELECT coalesce(json_agg(json_build_object('code', c.code, 'name', c.name, 'level', c.level) ORDER BY c.ord), '[]') FROM chain c),
    'grids_here', (SELECT coalesce(json_agg(g ORDER BY g.code), '[]') FROM grids_here g),
    'nearest_grids', (SELECT coalesce(json_agg(g ORDER BY g.side), '[]') FROM nearest_grids g),
    'police_here', (SELECT coalesce(json_agg(x ORDER BY x.code), '[]') FROM police_here x),
    'nearest_police', (SELECT coalesce(json_agg(x ORDER BY x.side), '[]') FROM nearest_police x),
    'teams', (SELECT coalesce(json_agg(t ORDER BY t.base_distance_m, t.code), '[]') FROM teams_near t),
    'chiefs', (SELECT coalesce(json_agg(c ORDER BY c.distance_m, c.code), '[]') FROM chiefs_near c),
    'extent_sides', (SELECT CASE WHEN (SELECT g FROM extent) IS NULL THEN NULL
                                 ELSE coalesce(to_json(codes), '[]') END FROM extent_sides)
) AS facts
