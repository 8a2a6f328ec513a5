-- The facts of the points (p_lon[k], p_lat[k]), one JSON document per point, numbered from 1
-- as the arrays are (`ord`). Distances in metres on the ellipsoid (geography); a point's
-- distance to a polygon it lies outside is measured to the polygon's boundary (the same
-- number, without geography's point-in-polygon test on the sphere).
--
-- Per point, optionally (arrays parallel to p_lon, NULL or shorter for none):
--   p_mechanism  the mechanism of its category: the teams serving it are the candidates;
--   p_extent     its extent: the sides the extent touches are reported;
--   p_sides      sides to report however far they are (a report's parties), joined by U+001F;
--   p_category   its category: the open cases of it nearby are reported as duplicates
--                (within p_dup_radius_m, reported since p_dup_since).
-- For every point:
--   p_radius_m       the border zone: the sides within it, and the chiefs within it;
--   p_teams_if_cross the teams only where the case can be cross-boundary (the point is on the
--                    line or outside every side, another side is within the radius, it is in a
--                    joint grid, or the point names parties or an extent): a single-side
--                    decision never reads them;
--   p_far            the nearest other side however far it is (its distance is the case's
--                    distance to the border). Without it, a point inside a side reports only the
--                    other sides within the radius (or asked for): what a decision's choices
--                    depend on, so that plain facts repeat exactly from case to case.
--
-- Sides reported: those containing the point, those within the radius, the nearest other one
-- (with p_far, or when no side contains the point), and those asked for. Grids and police
-- grids: those containing the point, and for each side within the radius or asked for, its
-- grid (police grid) containing the point, else its nearest (of the five nearest by the index,
-- measured on the ellipsoid; ties by code).
CREATE OR REPLACE FUNCTION jointgrid_facts(
    p_lon double precision[],
    p_lat double precision[],
    p_radius_m double precision,
    p_mechanism text[] DEFAULT NULL,
    p_extent geometry[] DEFAULT NULL,
    p_sides text[] DEFAULT NULL,
    p_teams_if_cross boolean DEFAULT false,
    p_far boolean DEFAULT true,
    p_category text[] DEFAULT NULL,
    p_dup_radius_m double precision DEFAULT NULL,
    p_dup_since timestamptz DEFAULT NULL
) RETURNS TABLE (ord integer, facts json) LANGUAGE plpgsql STABLE PARALLEL SAFE
-- One plan for every call: each point is a nested loop of index probes whatever the number
-- of points, and planning this statement per call cost more than running it for one point.
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
RETURN QUERY
WITH pts AS (
    SELECT u.k::integer AS ord,
           ST_SetSRID(ST_MakePoint(u.x, u.y), 4326) AS g,
           ST_SetSRID(ST_MakePoint(u.x, u.y), 4326)::geography AS gg,
           jointgrid_degrees(p_radius_m, u.y) AS rdeg,
           jointgrid_degrees(p_dup_radius_m, u.y) AS dup_deg,
           u.m AS mechanism, u.e AS extent,
           CASE WHEN u.s IS NULL OR u.s = '' THEN NULL ELSE string_to_array(u.s, E'\x1f') END
               AS asked,
           u.c AS category
    FROM unnest(p_lon, p_lat, coalesce(p_mechanism, '{}'), coalesce(p_extent, '{}'),
                coalesce(p_sides, '{}'), coalesce(p_category, '{}'))
         WITH ORDINALITY AS u(x, y, m, e, s, c, k)
    WHERE u.x IS NOT NULL
)
SELECT p.ord, f.facts FROM pts p CROSS JOIN LATERAL (
WITH inside AS (
    SELECT DISTINCT sp.side FROM side_parts sp WHERE ST_Intersects(sp.geom, p.g)
),
near AS (
    -- other sides within the radius: the pieces the degree radius reaches, measured
    SELECT x.side, x.d FROM (
        SELECT sp.side, min(ST_Distance(ST_Boundary(sp.geom)::geography, p.gg)) AS d
        FROM side_parts sp
        WHERE ST_DWithin(sp.geom, p.g, p.rdeg)
          AND sp.side NOT IN (SELECT side FROM inside)
        GROUP BY sp.side
    ) x
    WHERE x.d <= p_radius_m
),
far AS (
    -- the nearest other side when none is within the radius: the sides of the six nearest
    -- pieces not of a containing side, the nearest on the ellipsoid among them
    SELECT n.side, min(ST_Distance(ST_Boundary(n.geom)::geography, p.gg)) AS d
    FROM (
        SELECT sp.side, sp.geom FROM side_parts sp
        WHERE (p_far OR NOT EXISTS (SELECT FROM inside))
          AND NOT EXISTS (SELECT FROM near)
          AND sp.side NOT IN (SELECT side FROM inside)
        ORDER BY sp.geom <-> p.g
        LIMIT 6
    ) n
    GROUP BY n.side
    ORDER BY 2, 1
    LIMIT 1
),
asked AS (
    SELECT DISTINCT a.code FROM unnest(p.asked) a(code)
    WHERE a.code NOT IN (SELECT side FROM inside UNION ALL SELECT side FROM near
                         UNION ALL SELECT side FROM far)
),
sides AS (
    SELECT d.code, d.name, c.contains, c.distance_m FROM (
        SELECT side AS code, true AS contains, 0.0::float8 AS distance_m FROM inside
        UNION ALL
        SELECT side, false, d FROM near
        UNION ALL
        SELECT side, false, d FROM far
        UNION ALL
        SELECT a.code, false, (
            SELECT min(ST_Distance(ST_Boundary(k.geom)::geography, p.gg)) FROM (
                SELECT sp.geom FROM side_parts sp WHERE sp.side || '' = a.code
                ORDER BY sp.geom <-> p.g LIMIT 6) k)
        FROM asked a
    ) c JOIN areas d ON d.code = c.code AND d.level = 'district'
),
involvable AS (
    -- the sides a decision can involve: their grids and police grids are looked up
    SELECT s.code FROM sides s WHERE s.distance_m <= p_radius_m OR s.code = ANY (p.asked)
),
village AS (
    SELECT v.code, v.name, v.parent_code
    FROM areas v
    WHERE v.level = 'village' AND ST_Intersects(v.geom, p.g)
    ORDER BY v.code
    LIMIT 1
),
chain AS (
    SELECT d.code, d.name, d.level, 0 AS o FROM areas d, village v WHERE d.code = left(v.code, 6)
    UNION ALL
    SELECT t.code, t.name, t.level, 1 FROM areas t, village v WHERE t.code = v.parent_code
    UNION ALL
    SELECT v.code, v.name, 'village', 2 FROM village v
),
grids_here AS (
    SELECT gr.code, gr.name, gr.side, gr.village_code, gr.joint, gr.chief_name, gr.chief_phone,
           true AS contains, 0.0::float8 AS distance_m,
           CASE WHEN gr.joint THEN ARRAY(
               SELECT d.code FROM areas d
               WHERE d.level = 'district' AND ST_Intersects(d.geom, gr.geom)
                 AND NOT ST_Touches(d.geom, gr.geom)
               ORDER BY d.code)
           ELSE ARRAY[gr.side] END AS spans
    FROM grids gr
    WHERE ST_Intersects(gr.geom, p.g)
),
nearest_grids AS (
    SELECT DISTINCT ON (x.side) x.* FROM (
        SELECT h.code, h.name, h.side, h.village_code, h.joint, h.chief_name, h.chief_phone,
               false AS contains, 0.0::float8 AS distance_m, ARRAY[h.side] AS spans
        FROM grids_here h WHERE h.side IN (SELECT code FROM sides)
        UNION ALL
        SELECT n.* FROM (SELECT s.code FROM involvable s
                         WHERE NOT EXISTS (SELECT FROM grids_here h WHERE h.side = s.code)) s
        CROSS JOIN LATERAL (
            SELECT c.code, c.name, c.side, c.village_code, c.joint, c.chief_name, c.chief_phone,
                   false AS contains,
                   ST_Distance(ST_Boundary(c.geom)::geography, p.gg) AS distance_m,
                   ARRAY[c.side] AS spans
            -- `side || ''`: walk the GiST index in distance order; the side's btree would read
            -- and sort every grid of the side (about 1,500 at province scale)
            FROM (SELECT gr.* FROM grids gr WHERE gr.side || '' = s.code
                  ORDER BY gr.geom <-> p.g LIMIT 5) c
            ORDER BY 9, 1
            LIMIT 1
        ) n
    ) x
    ORDER BY x.side, x.distance_m, x.code
),
police_here AS (
    SELECT pg.code, pg.name, pg.side, pg.station, pg.officer_name, pg.officer_phone,
           true AS contains, 0.0::float8 AS distance_m
    FROM police_grids pg
    WHERE ST_Intersects(pg.geom, p.g)
),
nearest_police AS (
    SELECT DISTINCT ON (x.side) x.* FROM (
        SELECT h.code, h.name, h.side, h.station, h.officer_name, h.officer_phone,
               false AS contains, 0.0::float8 AS distance_m
        FROM police_here h WHERE h.side IN (SELECT code FROM sides)
        UNION ALL
        SELECT n.* FROM (SELECT s.code FROM involvable s
                         WHERE NOT EXISTS (SELECT FROM police_here h WHERE h.side = s.code)) s
        CROSS JOIN LATERAL (
            SELECT c.code, c.name, c.side, c.station, c.officer_name, c.officer_phone,
                   false AS contains,
                   ST_Distance(ST_Boundary(c.geom)::geography, p.gg) AS distance_m
            FROM (SELECT pg.* FROM police_grids pg WHERE pg.side || '' = s.code
                  ORDER BY pg.geom <-> p.g LIMIT 5) c
            ORDER BY 8, 1
            LIMIT 1
        ) n
    ) x
    ORDER BY x.side, x.distance_m, x.code
),
need_teams AS (
    SELECT NOT p_teams_if_cross
        OR p.asked IS NOT NULL
        OR p.extent IS NOT NULL
        OR (SELECT count(*) FROM inside) <> 1
        OR EXISTS (SELECT FROM sides s WHERE NOT s.contains AND s.distance_m <= p_radius_m)
        OR EXISTS (SELECT FROM grids_here h WHERE h.joint) AS yes
),
-- A team's position is its base. (Where a team is, and so its distance, is decided here, for
-- every caller at once: a later rule for positions changes only this part.)
team_ids AS (
    SELECT t.code FROM teams t
    WHERE (SELECT yes FROM need_teams)
      AND ST_Intersects(t.patrol_area, p.g)
      AND (p.mechanism IS NULL OR p.mechanism = ANY (t.mechanisms))
    UNION
    SELECT c.code FROM (
        SELECT t.code FROM teams t
        WHERE (SELECT yes FROM need_teams)
          AND (p.mechanism IS NULL OR p.mechanism = ANY (t.mechanisms))
        ORDER BY t.base <-> p.g
        LIMIT 10
    ) c
),
teams_near AS (
    SELECT t.code, t.name, t.kind, t.side, t.sides, t.mechanisms, t.roster,
           ST_Intersects(t.patrol_area, p.g) AS covers,
           ST_Distance(t.base::geography, p.gg) AS base_distance_m
    FROM teams t JOIN team_ids USING (code)
),
chiefs_near AS (
    SELECT c.code, c.role, c.side, c.name, c.phone, c.feature_name,
           ST_Distance(c.geom::geography, p.gg) AS distance_m
    FROM chiefs c
    WHERE c.geom && ST_Expand(p.g, p.rdeg)
      AND ST_DWithin(c.geom::geography, p.gg, p_radius_m)
),
extent_sides AS (
    SELECT array_agg(DISTINCT sp.side ORDER BY sp.side) AS codes
    FROM side_parts sp
    WHERE p.extent IS NOT NULL AND ST_Intersects(sp.geom, p.extent)
),
dups AS (
    SELECT i.id::text AS id, i.code, ST_Distance(i.geom::geography, p.gg) AS distance_m,
           i.reported_at::text AS reported_at
    FROM incidents i
    WHERE p.category IS NOT NULL
      -- `category || ''`: find the open cases near the point through their GiST index and
      -- filter those; the (category, reported_at) index read every recent case of the
      -- category in the province first
      AND i.category || '' = p.category
      AND jointgrid_is_open(i.status)
      AND i.reported_at >= p_dup_since
      AND i.geom && ST_Expand(p.g, p.dup_deg)
      AND ST_DWithin(i.geom::geography, p.gg, p_dup_radius_m)
    ORDER BY 3, i.reported_at, i.id  -- at the same distance, the first reported
    LIMIT 5
)
SELECT json_build_object(
    'sides', (SELECT coalesce(json_agg(s ORDER BY s.code), '[]') FROM sides s),
    'chain', (SELECT coalesce(json_agg(json_build_object('code', c.code, 'name', c.name,
                  'level', c.level) ORDER BY c.o), '[]') FROM chain c),
    'grids_here', (SELECT coalesce(json_agg(x ORDER BY x.code), '[]') FROM grids_here x),
    'nearest_grids', (SELECT coalesce(json_agg(x ORDER BY x.side), '[]') FROM nearest_grids x),
    'police_here', (SELECT coalesce(json_agg(x ORDER BY x.code), '[]') FROM police_here x),
    'nearest_police', (SELECT coalesce(json_agg(x ORDER BY x.side), '[]') FROM nearest_police x),
    'teams', (SELECT coalesce(json_agg(t ORDER BY t.base_distance_m, t.code), '[]')
              FROM teams_near t),
    'chiefs', (SELECT coalesce(json_agg(c ORDER BY c.distance_m, c.code), '[]')
               FROM chiefs_near c),
    'extent_sides', CASE WHEN p.extent IS NULL THEN NULL
                         ELSE (SELECT coalesce(to_json(codes), '[]') FROM extent_sides) END,
    'duplicates', (SELECT coalesce(json_agg(d ORDER BY d.distance_m, d.reported_at, d.id), '[]')
                   FROM dups d)
) AS facts
) f;
END;
$$;
