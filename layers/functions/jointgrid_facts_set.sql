-- The facts of a set of points: the engine behind jointgrid_facts() (which see for the
-- arguments and the facts reported); call that one.
-- The facts are computed as set joins over all the points at once: each fact is one join of
-- the points against its layer (through the layer's GiST index, or a KNN `<->` walk per point
-- for a nearest), grouped by point. This SQL function holds that logic once (it is inlined
-- into jointgrid_facts's one cached plan). Joins between the per-point sets by the point's
-- number are hashed; where the planner's guess of a few points would make one a nested loop
-- (quadratic in the points), the fact is carried as an array on the point's row instead
-- (its containing sides, the sides of its grids and police grids).
CREATE OR REPLACE FUNCTION jointgrid_facts_set(
    p_lon double precision[],
    p_lat double precision[],
    p_radius_m double precision,
    p_mechanism text[],
    p_extent geometry[],
    p_sides text[],
    p_teams_if_cross boolean,
    p_far boolean,
    p_category text[],
    p_dup_radius_m double precision,
    p_dup_since timestamptz,
    p_as_of timestamptz[],
    p_fix_max_age_s double precision
) RETURNS TABLE (ord integer, facts json) LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH pts AS MATERIALIZED (
    SELECT u.k::integer AS ord,
           ST_SetSRID(ST_MakePoint(u.x, u.y), 4326) AS g,
           ST_SetSRID(ST_MakePoint(u.x, u.y), 4326)::geography AS gg,
           jointgrid_degrees(p_radius_m, u.y) AS rdeg,
           jointgrid_degrees(p_dup_radius_m, u.y) AS dup_deg,
           u.m AS mechanism, u.e AS extent,
           CASE WHEN u.s IS NULL OR u.s = '' THEN NULL ELSE string_to_array(u.s, E'\x1f') END
               AS asked,
           u.c AS category, u.t AS as_of
    FROM unnest(p_lon, p_lat, coalesce(p_mechanism, '{}'), coalesce(p_extent, '{}'),
                coalesce(p_sides, '{}'), coalesce(p_category, '{}'), coalesce(p_as_of, '{}'))
         WITH ORDINALITY AS u(x, y, m, e, s, c, t, k)
    WHERE u.x IS NOT NULL
),
inside AS MATERIALIZED (
    SELECT DISTINCT p.ord, sp.side FROM pts p JOIN side_parts sp ON ST_Intersects(sp.geom, p.g)
),
grids_here AS MATERIALIZED (
    SELECT p.ord, gr.code, gr.name, gr.side, gr.village_code, gr.joint, gr.chief_name,
           gr.chief_phone, true AS contains, 0.0::float8 AS distance_m,
           CASE WHEN gr.joint THEN ARRAY(
               SELECT d.code FROM areas d
               WHERE d.level = 'district' AND ST_Intersects(d.geom, gr.geom)
                 AND NOT ST_Touches(d.geom, gr.geom)
               ORDER BY d.code)
           ELSE ARRAY[gr.side] END AS spans
    FROM pts p JOIN grids gr ON ST_Intersects(gr.geom, p.g)
),
police_here AS MATERIALIZED (
    SELECT p.ord, pg.code, pg.name, pg.side, pg.station, pg.officer_name, pg.officer_phone,
           true AS contains, 0.0::float8 AS distance_m
    FROM pts p JOIN police_grids pg ON ST_Intersects(pg.geom, p.g)
),
-- the points with the sides containing them, and the sides of the grids and police grids
-- containing them
p1 AS MATERIALIZED (
    SELECT p.*, coalesce(i.ins, '{}') AS ins, coalesce(h.sides, '{}') AS grid_sides,
           coalesce(c.sides, '{}') AS police_sides
    FROM pts p
    LEFT JOIN (SELECT i.ord, array_agg(i.side) AS ins FROM inside i GROUP BY i.ord) i
         ON i.ord = p.ord
    LEFT JOIN (SELECT h.ord, array_agg(h.side) AS sides FROM grids_here h GROUP BY h.ord) h
         ON h.ord = p.ord
    LEFT JOIN (SELECT h.ord, array_agg(h.side) AS sides FROM police_here h GROUP BY h.ord) c
         ON c.ord = p.ord
),
near AS MATERIALIZED (
    -- other sides within the radius: the pieces the degree radius reaches, measured
    SELECT p.ord, sp.side, min(ST_Distance(ST_Boundary(sp.geom)::geography, p.gg)) AS d
    FROM p1 p JOIN side_parts sp ON ST_DWithin(sp.geom, p.g, p.rdeg)
    WHERE sp.side <> ALL (p.ins)
    GROUP BY p.ord, sp.side
    HAVING min(ST_Distance(ST_Boundary(sp.geom)::geography, p.gg)) <= p_radius_m
),
far_pts AS MATERIALIZED (
    SELECT p.ord, p.g, p.gg, p.ins FROM p1 p
    WHERE (p_far OR cardinality(p.ins) = 0)
      AND NOT EXISTS (SELECT FROM near n WHERE n.ord = p.ord)
),
far AS MATERIALIZED (
    -- the nearest other side when none is within the radius: the sides of the six nearest
    -- pieces not of a containing side, the nearest on the ellipsoid among them
    SELECT p.ord, f.side, f.d
    FROM far_pts p
    CROSS JOIN LATERAL (
        SELECT n.side, min(ST_Distance(ST_Boundary(n.geom)::geography, p.gg)) AS d
        FROM (
            SELECT sp.side, sp.geom FROM side_parts sp
            WHERE sp.side <> ALL (p.ins)
            ORDER BY sp.geom <-> p.g
            LIMIT 6
        ) n
        GROUP BY n.side
        ORDER BY 2, 1
        LIMIT 1
    ) f
),
known AS (
    SELECT i.ord, i.side FROM inside i
    UNION ALL SELECT n.ord, n.side FROM near n
    UNION ALL SELECT f.ord, f.side FROM far f
),
asked AS (
    SELECT DISTINCT p.ord, a.code, p.g, p.gg FROM p1 p CROSS JOIN LATERAL unnest(p.asked) a(code)
    WHERE p.asked IS NOT NULL
      AND NOT EXISTS (SELECT FROM known k WHERE k.ord = p.ord AND k.side = a.code)
),
sides AS MATERIALIZED (
    SELECT c.ord, d.code, d.name, c.contains, c.distance_m FROM (
        SELECT i.ord, i.side AS code, true AS contains, 0.0::float8 AS distance_m FROM inside i
        UNION ALL
        SELECT n.ord, n.side, false, n.d FROM near n
        UNION ALL
        SELECT f.ord, f.side, false, f.d FROM far f
        UNION ALL
        SELECT a.ord, a.code, false, (
            SELECT min(ST_Distance(ST_Boundary(k.geom)::geography, a.gg)) FROM (
                SELECT sp.geom FROM side_parts sp WHERE sp.side || '' = a.code
                ORDER BY sp.geom <-> a.g LIMIT 6) k)
        FROM asked a
    ) c JOIN areas d ON d.code = c.code AND d.level = 'district'
),
involvable AS MATERIALIZED (
    -- the sides a decision can involve: their grids and police grids are looked up
    SELECT s.ord, s.code, p.g, p.gg, p.grid_sides, p.police_sides
    FROM sides s JOIN p1 p ON p.ord = s.ord
    WHERE s.distance_m <= p_radius_m OR s.code = ANY (p.asked)
),
village AS MATERIALIZED (
    SELECT DISTINCT ON (p.ord) p.ord, v.code, v.name, v.parent_code
    FROM pts p JOIN areas v ON v.level = 'village' AND ST_Intersects(v.geom, p.g)
    ORDER BY p.ord, v.code
),
chain AS (
    SELECT v.ord, d.code, d.name, d.level, 0 AS o FROM village v JOIN areas d
        ON d.code = left(v.code, 6)
    UNION ALL
    SELECT v.ord, t.code, t.name, t.level, 1 FROM village v JOIN areas t ON t.code = v.parent_code
    UNION ALL
    SELECT v.ord, v.code, v.name, 'village', 2 FROM village v
),
-- the involvable sides with no grid (police grid) containing the point: their nearest is
-- looked up
grid_wanted AS MATERIALIZED (
    SELECT s.ord, s.code, s.g, s.gg FROM involvable s WHERE s.code <> ALL (s.grid_sides)
),
police_wanted AS MATERIALIZED (
    SELECT s.ord, s.code, s.g, s.gg FROM involvable s WHERE s.code <> ALL (s.police_sides)
),
nearest_grids AS (
    SELECT DISTINCT ON (x.ord, x.side) x.* FROM (
        SELECT h.ord, h.code, h.name, h.side, h.village_code, h.joint, h.chief_name,
               h.chief_phone, false AS contains, 0.0::float8 AS distance_m, ARRAY[h.side] AS spans
        FROM grids_here h
        WHERE EXISTS (SELECT FROM sides s WHERE s.ord = h.ord AND s.code = h.side)
        UNION ALL
        SELECT s.ord, n.* FROM grid_wanted s
        CROSS JOIN LATERAL (
            SELECT c.code, c.name, c.side, c.village_code, c.joint, c.chief_name, c.chief_phone,
                   false AS contains,
                   ST_Distance(ST_Boundary(c.geom)::geography, s.gg) AS distance_m,
                   ARRAY[c.side] AS spans
            -- `side || ''`: walk the GiST index in distance order; the side's btree would read
            -- and sort every grid of the side (about 1,500 at province scale)
            FROM (SELECT gr.* FROM grids gr WHERE gr.side || '' = s.code
                  ORDER BY gr.geom <-> s.g LIMIT 5) c
            ORDER BY 9, 1
            LIMIT 1
        ) n
    ) x
    ORDER BY x.ord, x.side, x.distance_m, x.code
),
nearest_police AS (
    SELECT DISTINCT ON (x.ord, x.side) x.* FROM (
        SELECT h.ord, h.code, h.name, h.side, h.station, h.officer_name, h.officer_phone,
               false AS contains, 0.0::float8 AS distance_m
        FROM police_here h
        WHERE EXISTS (SELECT FROM sides s WHERE s.ord = h.ord AND s.code = h.side)
        UNION ALL
        SELECT s.ord, n.* FROM police_wanted s
        CROSS JOIN LATERAL (
            SELECT c.code, c.name, c.side, c.station, c.officer_name, c.officer_phone,
                   false AS contains,
                   ST_Distance(ST_Boundary(c.geom)::geography, s.gg) AS distance_m
            FROM (SELECT pg.* FROM police_grids pg WHERE pg.side || '' = s.code
                  ORDER BY pg.geom <-> s.g LIMIT 5) c
            ORDER BY 8, 1
            LIMIT 1
        ) n
    ) x
    ORDER BY x.ord, x.side, x.distance_m, x.code
),
need_teams AS (
    SELECT p.ord FROM p1 p
    WHERE NOT p_teams_if_cross OR p.asked IS NOT NULL OR p.extent IS NOT NULL
       OR cardinality(p.ins) <> 1
    UNION
    SELECT s.ord FROM sides s WHERE NOT s.contains AND s.distance_m <= p_radius_m
    UNION
    SELECT h.ord FROM grids_here h WHERE h.joint
),
-- Where a team is, and so its distance, is decided here, for every caller at once: its base,
-- and (for a point with a time to read positions as of) its nearest member's fresh fix.
team_pts AS MATERIALIZED (
    SELECT p.ord, p.g, p.gg, p.rdeg, p.mechanism, p.as_of FROM pts p
    WHERE EXISTS (SELECT FROM need_teams n WHERE n.ord = p.ord)
),
base_ids AS (
    SELECT p.ord, t.code FROM team_pts p
    JOIN teams t ON ST_Intersects(t.patrol_area, p.g)
    WHERE p.mechanism IS NULL OR p.mechanism = ANY (t.mechanisms)
    UNION
    SELECT p.ord, c.code FROM team_pts p
    CROSS JOIN LATERAL (
        SELECT t.code FROM teams t
        WHERE p.mechanism IS NULL OR p.mechanism = ANY (t.mechanisms)
        ORDER BY t.base <-> p.g
        LIMIT 10
    ) c
),
fix_pts AS MATERIALIZED (
    SELECT p.ord, p.g, p.gg, p.rdeg, p.mechanism, p.as_of,
           p.as_of - make_interval(secs => p_fix_max_age_s) AS since,
           -- some device's latest fix is newer than the point's time, or was stored after it
           -- (a re-route's past time; a device clock a little ahead): its fix as of the time
           -- is among the stored ones
           EXISTS (SELECT FROM device_latest l WHERE greatest(l.updated_at, l.time) > p.as_of)
               AS moved
    FROM team_pts p WHERE p.as_of IS NOT NULL
),
-- the devices that may have a fresh fix within the radius of the point
near_devices AS (
    SELECT p.ord, l.device FROM fix_pts p
    JOIN device_latest l ON l.geom && ST_Expand(p.g, p.rdeg)
    WHERE l.updated_at <= p.as_of AND l.time <= p.as_of AND l.time >= p.since
      AND ST_DWithin(l.geom::geography, p.gg, p_radius_m)
    UNION
    -- (the stored fixes of the time window, through the index on time: the window holds a
    -- few fixes of each device, where the point's box holds every fix of its day)
    -- (LATERAL: per point, never a scan of the whole table)
    SELECT p.ord, x.device FROM fix_pts p
    CROSS JOIN LATERAL (
        SELECT q.device FROM positions q
        WHERE q.time >= p.since AND q.time <= p.as_of AND q.received_at <= p.as_of
          AND q.flags = '{}' AND ST_DWithin(q.geom::geography, p.gg, p_radius_m)
    ) x
    WHERE p.moved
),
-- the candidate teams' devices (and those near the point), each with its fix as of the time
dev_fixes AS MATERIALIZED (
    SELECT c.ord, d.team, d.id AS device, f.member_id, f.time, f.geom, p.as_of,
           ST_Distance(f.geom::geography, p.gg) AS distance_m
    FROM (SELECT b.ord, b.code FROM base_ids b
          UNION
          SELECT n.ord, d.team FROM near_devices n JOIN devices d ON d.id = n.device) c
    JOIN fix_pts p ON p.ord = c.ord
    JOIN devices d ON d.team = c.code AND (d.revoked_at IS NULL OR d.revoked_at > p.as_of)
    CROSS JOIN LATERAL (
        SELECT x.member_id, x.time, x.geom FROM (
            -- the latest fix, when nothing was stored since the time (one key look-up)
            SELECT l.member_id, l.time, l.geom FROM device_latest l
            WHERE l.device = d.id AND l.updated_at <= p.as_of AND l.time <= p.as_of
            UNION ALL
            -- else the latest good fix at or before the time, received by then
            SELECT q.member_id, q.time, q.geom FROM positions q
            WHERE p.moved AND q.device = d.id AND q.time <= p.as_of AND q.time >= p.since
              AND q.received_at <= p.as_of AND q.flags = '{}'
              AND NOT EXISTS (SELECT FROM device_latest l
                              WHERE l.device = d.id AND l.updated_at <= p.as_of
                                AND l.time <= p.as_of)
        ) x
        ORDER BY x.time DESC
        LIMIT 1
    ) f
    WHERE f.time >= p.since
),
-- per team, its member nearest the point (ties: the later fix, then the device)
team_fix AS (
    SELECT DISTINCT ON (f.ord, f.team) f.ord, f.team, f.distance_m,
           json_build_object(
               'member', f.member_id, 'device', f.device,
               'at', to_char(f.time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
               'lon', ST_X(f.geom), 'lat', ST_Y(f.geom), 'distance_m', f.distance_m,
               'age_s', extract(epoch FROM f.as_of - f.time)::float8) AS fix
    FROM dev_fixes f
    ORDER BY f.ord, f.team, f.distance_m, f.time DESC, f.device
),
team_ids AS (
    SELECT b.ord, b.code FROM base_ids b
    UNION
    -- a team whose base is far but whose member stands near the point
    SELECT f.ord, f.team FROM team_fix f
    JOIN fix_pts p ON p.ord = f.ord JOIN teams t ON t.code = f.team
    WHERE f.distance_m <= p_radius_m AND (p.mechanism IS NULL OR p.mechanism = ANY (t.mechanisms))
),
teams_near AS (
    SELECT p.ord, t.code, t.name, t.kind, t.side, t.sides, t.mechanisms, t.roster,
           ST_Intersects(t.patrol_area, p.g) AS covers,
           ST_Distance(t.base::geography, p.gg) AS base_distance_m, f.fix
    FROM team_ids i JOIN pts p ON p.ord = i.ord JOIN teams t ON t.code = i.code
    LEFT JOIN team_fix f ON f.ord = i.ord AND f.team = i.code
),
chiefs_near AS (
    SELECT p.ord, c.code, c.role, c.side, c.name, c.phone, c.feature_name,
           ST_Distance(c.geom::geography, p.gg) AS distance_m
    FROM pts p JOIN chiefs c
      ON c.geom && ST_Expand(p.g, p.rdeg) AND ST_DWithin(c.geom::geography, p.gg, p_radius_m)
),
extent_sides AS (
    SELECT p.ord, array_agg(DISTINCT sp.side ORDER BY sp.side) AS codes
    FROM pts p JOIN side_parts sp ON ST_Intersects(sp.geom, p.extent)
    WHERE p.extent IS NOT NULL
    GROUP BY p.ord
),
dups AS (
    SELECT p.ord, d.* FROM pts p CROSS JOIN LATERAL (
        SELECT i.id::text AS id, i.code, ST_Distance(i.geom::geography, p.gg) AS distance_m,
               i.reported_at::text AS reported_at
        FROM incidents i
        -- `category || ''`: find the open cases near the point through their GiST index and
        -- filter those; the (category, reported_at) index read every recent case of the
        -- category in the province first
        WHERE i.category || '' = p.category
          AND jointgrid_is_open(i.status)
          AND i.reported_at >= p_dup_since
          AND i.geom && ST_Expand(p.g, p.dup_deg)
          AND ST_DWithin(i.geom::geography, p.gg, p_dup_radius_m)
        ORDER BY 3, i.reported_at, i.id  -- at the same distance, the first reported
        LIMIT 5
    ) d
    WHERE p.category IS NOT NULL
),
-- per point, each fact's JSON array (the rows' columns without the point's number)
a_sides AS (
    SELECT s.ord, json_agg(j ORDER BY s.code) AS j FROM sides s
    CROSS JOIN LATERAL (SELECT s.code, s.name, s.contains, s.distance_m) j GROUP BY s.ord
),
a_chain AS (
    SELECT c.ord, json_agg(json_build_object('code', c.code, 'name', c.name, 'level', c.level)
                           ORDER BY c.o) AS j
    FROM chain c GROUP BY c.ord
),
a_grids_here AS (
    SELECT x.ord, json_agg(j ORDER BY x.code) AS j FROM grids_here x
    CROSS JOIN LATERAL (SELECT x.code, x.name, x.side, x.village_code, x.joint, x.chief_name,
                        x.chief_phone, x.contains, x.distance_m, x.spans) j
    GROUP BY x.ord
),
a_nearest_grids AS (
    SELECT x.ord, json_agg(j ORDER BY x.side) AS j FROM nearest_grids x
    CROSS JOIN LATERAL (SELECT x.code, x.name, x.side, x.village_code, x.joint, x.chief_name,
                        x.chief_phone, x.contains, x.distance_m, x.spans) j
    GROUP BY x.ord
),
a_police_here AS (
    SELECT x.ord, json_agg(j ORDER BY x.code) AS j FROM police_here x
    CROSS JOIN LATERAL (SELECT x.code, x.name, x.side, x.station, x.officer_name,
                        x.officer_phone, x.contains, x.distance_m) j
    GROUP BY x.ord
),
a_nearest_police AS (
    SELECT x.ord, json_agg(j ORDER BY x.side) AS j FROM nearest_police x
    CROSS JOIN LATERAL (SELECT x.code, x.name, x.side, x.station, x.officer_name,
                        x.officer_phone, x.contains, x.distance_m) j
    GROUP BY x.ord
),
a_teams AS (
    -- `fix` only where there is one: the documents of points whose teams are all placed by
    -- their bases are, to the byte, those from before positions (json_agg of records)
    SELECT t.ord, CASE WHEN bool_and(t.fix IS NULL)
                       THEN json_agg(j ORDER BY t.base_distance_m, t.code)
                       ELSE json_agg(CASE WHEN t.fix IS NULL THEN to_json(j) ELSE to_json(k) END
                                     ORDER BY t.base_distance_m, t.code) END AS j
    FROM teams_near t
    CROSS JOIN LATERAL (SELECT t.code, t.name, t.kind, t.side, t.sides, t.mechanisms,
                        t.roster, t.covers, t.base_distance_m) j
    CROSS JOIN LATERAL (SELECT t.code, t.name, t.kind, t.side, t.sides, t.mechanisms,
                        t.roster, t.covers, t.base_distance_m, t.fix) k
    GROUP BY t.ord
),
a_chiefs AS (
    SELECT c.ord, json_agg(j ORDER BY c.distance_m, c.code) AS j FROM chiefs_near c
    CROSS JOIN LATERAL (SELECT c.code, c.role, c.side, c.name, c.phone, c.feature_name,
                        c.distance_m) j
    GROUP BY c.ord
),
a_dups AS (
    SELECT d.ord, json_agg(j ORDER BY d.distance_m, d.reported_at, d.id) AS j FROM dups d
    CROSS JOIN LATERAL (SELECT d.id, d.code, d.distance_m, d.reported_at) j
    GROUP BY d.ord
)
SELECT p.ord, json_build_object(
    'sides', coalesce(a1.j, '[]'),
    'chain', coalesce(a2.j, '[]'),
    'grids_here', coalesce(a3.j, '[]'),
    'nearest_grids', coalesce(a4.j, '[]'),
    'police_here', coalesce(a5.j, '[]'),
    'nearest_police', coalesce(a6.j, '[]'),
    'teams', coalesce(a7.j, '[]'),
    'chiefs', coalesce(a8.j, '[]'),
    'extent_sides', CASE WHEN p.extent IS NULL THEN NULL
                         ELSE coalesce(to_json(e.codes), '[]') END,
    'duplicates', coalesce(a9.j, '[]')
) AS facts
FROM pts p
LEFT JOIN a_sides a1 ON a1.ord = p.ord
LEFT JOIN a_chain a2 ON a2.ord = p.ord
LEFT JOIN a_grids_here a3 ON a3.ord = p.ord
LEFT JOIN a_nearest_grids a4 ON a4.ord = p.ord
LEFT JOIN a_police_here a5 ON a5.ord = p.ord
LEFT JOIN a_nearest_police a6 ON a6.ord = p.ord
LEFT JOIN a_teams a7 ON a7.ord = p.ord
LEFT JOIN a_chiefs a8 ON a8.ord = p.ord
LEFT JOIN extent_sides e ON e.ord = p.ord
LEFT JOIN a_dups a9 ON a9.ord = p.ord
$$;
