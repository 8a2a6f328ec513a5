-- Everything routing needs about one point, as one JSON document. Distances in metres on the
-- ellipsoid; `p_radius_deg` and `p_dup_radius_deg` are degree radii that surely contain the
-- metric ones (index prefilters). NULL p_category skips the duplicate search. `p_sides` names
-- sides to report however far they are (a report's parties). `p_teams_if_cross` leaves the
-- teams out where no decision can use them; `p_radius_m` is then the border zone.
CREATE OR REPLACE FUNCTION location_facts(
    p_lon double precision,
    p_lat double precision,
    p_radius_m double precision,
    p_radius_deg double precision,
    p_mechanism text DEFAULT NULL,
    p_extent geometry DEFAULT NULL,
    p_category text DEFAULT NULL,
    p_dup_radius_m double precision DEFAULT NULL,
    p_dup_radius_deg double precision DEFAULT NULL,
    p_dup_since timestamptz DEFAULT NULL,
    p_sides text[] DEFAULT NULL,
    p_teams_if_cross boolean DEFAULT false
) RETURNS json LANGUAGE plpgsql STABLE PARALLEL SAFE
-- One plan for every point: re-planning this query per call (a custom plan for each set of
-- parameters) cost more than executing it.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    g geometry := ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326);
    gg geography := ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326)::geography;
    result json;
BEGIN
WITH containing AS (
    SELECT DISTINCT sp.side FROM side_parts sp WHERE ST_Intersects(sp.geom, g)
),
nearest_other AS (
    -- the sides of the six nearest pieces not of a containing side; the nearest on the
    -- ellipsoid among them is the "other side" of the point
    SELECT n.side FROM (
        SELECT sp.side, sp.geom FROM side_parts sp
        WHERE sp.side NOT IN (SELECT side FROM containing)
        ORDER BY sp.geom <-> g
        LIMIT 6
    ) n
    GROUP BY n.side
    ORDER BY min(ST_Distance(ST_Boundary(n.geom)::geography, gg)), n.side
    LIMIT 1
),
candidate AS (
    SELECT side FROM containing
    UNION
    SELECT side FROM nearest_other
    UNION
    SELECT sp.side FROM side_parts sp
    WHERE ST_DWithin(sp.geom, g, p_radius_deg)
      AND ST_DWithin(ST_Boundary(sp.geom)::geography, gg, p_radius_m)
    UNION
    SELECT unnest(p_sides)
),
sides AS (
    SELECT d.code, d.name, c.side IN (SELECT side FROM containing) AS contains,
           CASE WHEN c.side IN (SELECT side FROM containing) THEN 0.0::float8
                ELSE (SELECT min(ST_Distance(ST_Boundary(k.geom)::geography, gg)) FROM (
                          SELECT sp.geom FROM side_parts sp WHERE sp.side || '' = c.side
                          ORDER BY sp.geom <-> g LIMIT 6) k)
           END AS distance_m
    FROM candidate c JOIN areas d ON d.code = c.side AND d.level = 'district'
),
village AS (
    SELECT v.code, v.name, v.parent_code
    FROM areas v
    WHERE v.level = 'village' AND ST_Intersects(v.geom, g)
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
    SELECT gr.code, gr.name, gr.side, gr.village_code, gr.joint, gr.chief_name, gr.chief_phone,
           true AS contains, 0.0::float8 AS distance_m,
           CASE WHEN gr.joint THEN ARRAY(
               SELECT d.code FROM areas d
               WHERE d.level = 'district' AND ST_Intersects(d.geom, gr.geom)
                 AND NOT ST_Touches(d.geom, gr.geom)
               ORDER BY d.code)
           ELSE ARRAY[gr.side] END AS spans
    FROM grids gr
    WHERE ST_Intersects(gr.geom, g)
),
nearest_grids AS (
    -- per side within the radius or asked for (the only ones a decision can involve): a grid
    -- of it containing the point (0 m, lowest code), else the nearest of the five nearest by
    -- the index, measured on the ellipsoid
    SELECT DISTINCT ON (x.side) x.* FROM (
        SELECT h.code, h.name, h.side, h.village_code, h.joint, h.chief_name, h.chief_phone,
               false AS contains, 0.0::float8 AS distance_m, ARRAY[h.side] AS spans
        FROM grids_here h WHERE h.side IN (SELECT code FROM sides)
        UNION ALL
        SELECT n.* FROM (SELECT s.code FROM sides s
                         WHERE (s.distance_m <= p_radius_m OR s.code = ANY (p_sides))
                           AND NOT EXISTS (SELECT FROM grids_here h WHERE h.side = s.code)) s
        CROSS JOIN LATERAL (
            SELECT c.code, c.name, c.side, c.village_code, c.joint, c.chief_name, c.chief_phone,
                   false AS contains, ST_Distance(ST_Boundary(c.geom)::geography, gg) AS distance_m,
                   ARRAY[c.side] AS spans
            -- `side || ''`: walk the GiST index in distance order; the side's btree would read
            -- and sort every grid of the side (about 1,500 at province scale)
            FROM (SELECT gr.* FROM grids gr WHERE gr.side || '' = s.code
                  ORDER BY gr.geom <-> g LIMIT 5) c
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
    WHERE ST_Intersects(pg.geom, g)
),
nearest_police AS (
    SELECT DISTINCT ON (x.side) x.* FROM (
        SELECT h.code, h.name, h.side, h.station, h.officer_name, h.officer_phone,
               false AS contains, 0.0::float8 AS distance_m
        FROM police_here h WHERE h.side IN (SELECT code FROM sides)
        UNION ALL
        SELECT n.* FROM (SELECT s.code FROM sides s
                         WHERE (s.distance_m <= p_radius_m OR s.code = ANY (p_sides))
                           AND NOT EXISTS (SELECT FROM police_here h WHERE h.side = s.code)) s
        CROSS JOIN LATERAL (
            SELECT c.code, c.name, c.side, c.station, c.officer_name, c.officer_phone,
                   false AS contains, ST_Distance(ST_Boundary(c.geom)::geography, gg) AS distance_m
            FROM (SELECT pg.* FROM police_grids pg WHERE pg.side || '' = s.code
                  ORDER BY pg.geom <-> g LIMIT 5) c
            ORDER BY 8, 1
            LIMIT 1
        ) n
    ) x
    ORDER BY x.side, x.distance_m, x.code
),
need_teams AS (
    -- with p_teams_if_cross, teams only where the case can be cross-boundary: on the line or
    -- outside every side, another side within the radius (the border zone), a joint grid,
    -- parties, or an extent. Elsewhere the decision never reads them.
    SELECT NOT p_teams_if_cross
        OR p_sides IS NOT NULL
        OR p_extent IS NOT NULL
        OR (SELECT count(*) FROM containing) <> 1
        OR EXISTS (SELECT FROM sides s WHERE NOT s.contains AND s.distance_m <= p_radius_m)
        OR EXISTS (SELECT FROM grids_here h WHERE h.joint) AS yes
),
team_ids AS (
    SELECT t.code FROM teams t
    WHERE (SELECT yes FROM need_teams)
      AND ST_Intersects(t.patrol_area, g)
      AND (p_mechanism IS NULL OR p_mechanism = ANY (t.mechanisms))
    UNION
    SELECT c.code FROM (
        SELECT t.code FROM teams t
        WHERE (SELECT yes FROM need_teams)
          AND (p_mechanism IS NULL OR p_mechanism = ANY (t.mechanisms))
        ORDER BY t.base <-> g
        LIMIT 10
    ) c
),
teams_near AS (
    SELECT t.code, t.name, t.kind, t.side, t.sides, t.mechanisms, t.roster,
           ST_Intersects(t.patrol_area, g) AS covers,
           ST_Distance(t.base::geography, gg) AS base_distance_m
    FROM teams t JOIN team_ids USING (code)
),
chiefs_near AS (
    SELECT c.code, c.role, c.side, c.name, c.phone, c.feature_name,
           ST_Distance(c.geom::geography, gg) AS distance_m
    FROM chiefs c
    WHERE c.geom && ST_Expand(g, p_radius_deg)
      AND ST_DWithin(c.geom::geography, gg, p_radius_m)
),
extent_sides AS (
    SELECT array_agg(DISTINCT sp.side ORDER BY sp.side) AS codes
    FROM side_parts sp
    WHERE p_extent IS NOT NULL AND ST_Intersects(sp.geom, p_extent)
),
dups AS (
    SELECT i.id::text AS id, i.code, ST_Distance(i.geom::geography, gg) AS distance_m,
           i.reported_at::text AS reported_at
    FROM incidents i
    WHERE p_category IS NOT NULL
      -- `category || ''`: find the open cases near the point through their GiST index and
      -- filter those; the (category, reported_at) index read every recent case of the
      -- category in the province first (thousands, more with every busy day)
      AND i.category || '' = p_category
      AND i.status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')
      AND i.reported_at >= p_dup_since
      AND i.geom && ST_Expand(g, p_dup_radius_deg)
      AND ST_DWithin(i.geom::geography, gg, p_dup_radius_m)
    ORDER BY 3, i.reported_at, i.id  -- at the same distance, the first reported
    LIMIT 5
)
SELECT json_build_object(
    'sides', (SELECT coalesce(json_agg(s ORDER BY s.code), '[]') FROM sides s),
    'chain', (SELECT coalesce(json_agg(json_build_object('code', c.code, 'name', c.name,
                  'level', c.level) ORDER BY c.ord), '[]') FROM chain c),
    'grids_here', (SELECT coalesce(json_agg(x ORDER BY x.code), '[]') FROM grids_here x),
    'nearest_grids', (SELECT coalesce(json_agg(x ORDER BY x.side), '[]') FROM nearest_grids x),
    'police_here', (SELECT coalesce(json_agg(x ORDER BY x.code), '[]') FROM police_here x),
    'nearest_police', (SELECT coalesce(json_agg(x ORDER BY x.side), '[]') FROM nearest_police x),
    'teams', (SELECT coalesce(json_agg(t ORDER BY t.base_distance_m, t.code), '[]') FROM teams_near t),
    'chiefs', (SELECT coalesce(json_agg(c ORDER BY c.distance_m, c.code), '[]') FROM chiefs_near c),
    'extent_sides', CASE WHEN p_extent IS NULL THEN NULL
                         ELSE (SELECT coalesce(to_json(codes), '[]') FROM extent_sides) END,
    'duplicates', (SELECT coalesce(json_agg(d ORDER BY d.distance_m, d.reported_at, d.id), '[]')
                   FROM dups d)
) INTO result;
RETURN result;
END;
$$;
