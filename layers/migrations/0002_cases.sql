-- Cases (incidents) and their append-only audit trail, and the location-facts function shared
-- by single look-ups (/locate, reporting) and the set-based re-route.

CREATE SEQUENCE incident_code_seq;

CREATE TABLE incidents (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                  text NOT NULL UNIQUE,
    side                  text NOT NULL CHECK (side ~ '^[0-9]{6}$'),  -- lead side; distribution column
    sides                 text[] NOT NULL,
    status                text NOT NULL CHECK (status IN ('reported', 'accepted', 'dispatched',
                              'in_progress', 'resolved', 'verified', 'closed', 'rejected', 'duplicate')),
    category              text NOT NULL,
    severity              text NOT NULL,
    description           text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    occurred_at           timestamptz NOT NULL,
    reported_at           timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    due_at                timestamptz,
    cross_boundary        boolean NOT NULL,
    reasons               text[] NOT NULL DEFAULT '{}',
    mechanism             text,
    lead_side             text NOT NULL,
    distance_to_border_m  double precision,
    grid_code             text,
    police_grid_code      text,
    teams                 jsonb NOT NULL DEFAULT '[]',
    contacts              jsonb NOT NULL DEFAULT '[]',
    routing               jsonb NOT NULL DEFAULT '{}',
    escalation_level      integer NOT NULL DEFAULT 0,
    verified_sides        text[] NOT NULL DEFAULT '{}',
    merged_into           uuid REFERENCES incidents (id),
    possible_duplicate_of uuid,
    input                 jsonb NOT NULL DEFAULT '{}',  -- the location as sent, with its crs
    reporter              jsonb NOT NULL DEFAULT '{}',  -- private: never in public feeds
    idempotency_key       text,
    request_hash          text,
    geom                  geometry(Point, 4326) NOT NULL,
    extent                geometry(Geometry, 4326),
    CHECK (lead_side = side)
);
CREATE UNIQUE INDEX incidents_idempotency_key_uq ON incidents (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX incidents_geom_gix ON incidents USING gist (geom);
CREATE INDEX incidents_extent_gix ON incidents USING gist (extent);
CREATE INDEX incidents_side_status_idx ON incidents (side, status);
CREATE INDEX incidents_category_time_idx ON incidents (category, reported_at);
CREATE INDEX incidents_due_open_idx ON incidents (due_at)
    WHERE status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved');
CREATE INDEX incidents_updated_idx ON incidents (updated_at, id);
CREATE INDEX incidents_sides_gin ON incidents USING gin (sides);

CREATE TABLE incident_events (
    id          bigserial PRIMARY KEY,
    incident_id uuid NOT NULL REFERENCES incidents (id),
    side        text NOT NULL,  -- the case's lead side; distribution column
    seq         integer NOT NULL,
    action      text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    actor       jsonb NOT NULL DEFAULT '{}',
    actor_side  text,
    note        text,
    payload     jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (incident_id, seq)
);
CREATE INDEX incident_events_incident_idx ON incident_events (incident_id, seq);

-- The audit trail is append-only: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE FUNCTION incident_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'incident_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER incident_events_no_update BEFORE UPDATE OR DELETE ON incident_events
    FOR EACH ROW EXECUTE FUNCTION incident_events_append_only();
CREATE TRIGGER incident_events_no_truncate BEFORE TRUNCATE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION incident_events_append_only();

-- Everything routing needs about one point, as one JSON document. Distances in metres on the
-- ellipsoid; `p_radius_deg` and `p_dup_radius_deg` are degree radii that surely contain the
-- metric ones (index prefilters). NULL p_category skips the duplicate search.
CREATE FUNCTION location_facts(
    p_lon double precision,
    p_lat double precision,
    p_radius_m double precision,
    p_radius_deg double precision,
    p_mechanism text DEFAULT NULL,
    p_extent geometry DEFAULT NULL,
    p_category text DEFAULT NULL,
    p_dup_radius_m double precision DEFAULT NULL,
    p_dup_radius_deg double precision DEFAULT NULL,
    p_dup_since timestamptz DEFAULT NULL
) RETURNS json LANGUAGE sql STABLE PARALLEL SAFE AS $$
WITH p AS (
    SELECT ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326) AS g,
           ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326)::geography AS gg
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
           true AS contains, 0.0::float8 AS distance_m,
           CASE WHEN g.joint THEN ARRAY(
               SELECT d.code FROM areas d
               WHERE d.level = 'district' AND ST_Intersects(d.geom, g.geom)
                 AND NOT ST_Touches(d.geom, g.geom)
               ORDER BY d.code)
           ELSE ARRAY[g.side] END AS spans
    FROM grids g, p
    WHERE ST_Intersects(g.geom, p.g)
),
nearest_grids AS (
    SELECT n.* FROM sides s CROSS JOIN LATERAL (
        SELECT c.code, c.name, c.side, c.village_code, c.joint, c.chief_name, c.chief_phone,
               false AS contains, ST_Distance(c.geom::geography, p.gg) AS distance_m,
               ARRAY[c.side] AS spans
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
      AND (p_mechanism IS NULL OR p_mechanism = ANY (t.mechanisms))
    UNION
    SELECT c.code FROM (
        SELECT t.code FROM teams t, p
        WHERE p_mechanism IS NULL OR p_mechanism = ANY (t.mechanisms)
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
    WHERE c.geom && ST_Expand(p.g, p_radius_deg)
      AND ST_DWithin(c.geom::geography, p.gg, p_radius_m)
),
extent_sides AS (
    SELECT array_agg(d.code ORDER BY d.code) AS codes
    FROM areas d
    WHERE p_extent IS NOT NULL AND d.level = 'district' AND ST_Intersects(d.geom, p_extent)
),
dups AS (
    SELECT i.id::text AS id, i.code, ST_Distance(i.geom::geography, p.gg) AS distance_m,
           i.reported_at::text AS reported_at
    FROM incidents i, p
    WHERE p_category IS NOT NULL
      AND i.category = p_category
      AND i.status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')
      AND i.reported_at >= p_dup_since
      AND i.geom && ST_Expand(p.g, p_dup_radius_deg)
      AND ST_DWithin(i.geom::geography, p.gg, p_dup_radius_m)
    ORDER BY 3
    LIMIT 5
)
SELECT json_build_object(
    'sides', (SELECT coalesce(json_agg(s ORDER BY s.code), '[]') FROM sides s),
    'chain', (SELECT coalesce(json_agg(json_build_object('code', c.code, 'name', c.name,
                  'level', c.level) ORDER BY c.ord), '[]') FROM chain c),
    'grids_here', (SELECT coalesce(json_agg(g ORDER BY g.code), '[]') FROM grids_here g),
    'nearest_grids', (SELECT coalesce(json_agg(g ORDER BY g.side), '[]') FROM nearest_grids g),
    'police_here', (SELECT coalesce(json_agg(x ORDER BY x.code), '[]') FROM police_here x),
    'nearest_police', (SELECT coalesce(json_agg(x ORDER BY x.side), '[]') FROM nearest_police x),
    'teams', (SELECT coalesce(json_agg(t ORDER BY t.base_distance_m, t.code), '[]') FROM teams_near t),
    'chiefs', (SELECT coalesce(json_agg(c ORDER BY c.distance_m, c.code), '[]') FROM chiefs_near c),
    'extent_sides', CASE WHEN p_extent IS NULL THEN NULL
                         ELSE (SELECT coalesce(to_json(codes), '[]') FROM extent_sides) END,
    'duplicates', (SELECT coalesce(json_agg(d ORDER BY d.distance_m), '[]') FROM dups d)
)
$$;
