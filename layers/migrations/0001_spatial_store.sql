-- The spatial store: both sides' areas, grids, police grids, joint teams, chiefs, and the
-- derived border. Geometry is SRID 4326, valid, GiST-indexed. Every large table carries `side`
-- (the district code), the distribution column for a later sharded deployment.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE areas (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9]{6}([0-9]{3}){0,2}$'),
    name        text NOT NULL,
    name_en     text,
    level       text NOT NULL CHECK (level IN ('district', 'town', 'village')),
    parent_code text REFERENCES areas (code) DEFERRABLE INITIALLY DEFERRED,
    side        text NOT NULL CHECK (side ~ '^[0-9]{6}$'),
    synthetic   boolean NOT NULL DEFAULT false,
    props       jsonb NOT NULL DEFAULT '{}',
    geom        geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((level = 'district') = (parent_code IS NULL)),
    CHECK (level <> 'district' OR code = side),
    CHECK (left(code, 6) = side)
);
CREATE INDEX areas_geom_gix ON areas USING gist (geom);
CREATE INDEX areas_side_level_idx ON areas (side, level);
CREATE INDEX areas_parent_idx ON areas (parent_code);

CREATE TABLE grids (
    code         text PRIMARY KEY CHECK (code ~ '^[0-9]{15}$'),
    name         text NOT NULL,
    village_code text NOT NULL REFERENCES areas (code) DEFERRABLE INITIALLY DEFERRED,
    side         text NOT NULL CHECK (side ~ '^[0-9]{6}$'),
    joint        boolean NOT NULL DEFAULT false,
    chief_name   text,
    chief_phone  text,
    workers      jsonb NOT NULL DEFAULT '[]',
    synthetic    boolean NOT NULL DEFAULT false,
    props        jsonb NOT NULL DEFAULT '{}',
    geom         geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (left(code, 12) = village_code),
    CHECK (left(code, 6) = side)
);
CREATE INDEX grids_geom_gix ON grids USING gist (geom);
CREATE INDEX grids_side_idx ON grids (side);
CREATE INDEX grids_village_idx ON grids (village_code);

CREATE TABLE police_grids (
    code          text PRIMARY KEY,
    name          text NOT NULL,
    station       text NOT NULL,
    officer_name  text,
    officer_phone text,
    side          text NOT NULL CHECK (side ~ '^[0-9]{6}$'),
    synthetic     boolean NOT NULL DEFAULT false,
    props         jsonb NOT NULL DEFAULT '{}',
    geom          geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX police_grids_geom_gix ON police_grids USING gist (geom);
CREATE INDEX police_grids_side_idx ON police_grids (side);

CREATE TABLE teams (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL,
    side        text NOT NULL CHECK (side ~ '^[0-9]{6}$'),
    sides       text[] NOT NULL,
    mechanisms  text[] NOT NULL DEFAULT '{}',
    roster      jsonb NOT NULL DEFAULT '{"shifts": []}',
    members     jsonb NOT NULL DEFAULT '[]',
    synthetic   boolean NOT NULL DEFAULT false,
    props       jsonb NOT NULL DEFAULT '{}',
    patrol_area geometry(MultiPolygon, 4326) NOT NULL CHECK (ST_IsValid(patrol_area) AND NOT ST_IsEmpty(patrol_area)),
    base        geometry(Point, 4326) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX teams_patrol_gix ON teams USING gist (patrol_area);
CREATE INDEX teams_base_gix ON teams USING gist (base);

CREATE TABLE chiefs (
    code         text PRIMARY KEY,
    role         text NOT NULL,
    side         text NOT NULL CHECK (side ~ '^[0-9]{6}$'),
    name         text NOT NULL,
    phone        text,
    feature_name text,
    synthetic    boolean NOT NULL DEFAULT false,
    props        jsonb NOT NULL DEFAULT '{}',
    geom         geometry(Geometry, 4326) NOT NULL
        CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)
               AND GeometryType(geom) IN ('LINESTRING', 'MULTILINESTRING', 'POLYGON', 'MULTIPOLYGON')),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chiefs_geom_gix ON chiefs USING gist (geom);
CREATE INDEX chiefs_side_role_idx ON chiefs (side, role);

-- Derived from `areas` by derive_border(); never hand-drawn.
CREATE TABLE border (
    id         text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('line', 'zone')),
    side       text,
    sides      text[] NOT NULL,
    width_m    double precision,
    length_m   double precision,
    area_m2    double precision,
    geom       geometry(Geometry, 4326) NOT NULL,
    derived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX border_geom_gix ON border USING gist (geom);

-- The shared line between every pair of sides (district boundaries within `tolerance_m` of
-- the other district), and each side's strip within `width_m` of any other side. Metric work
-- is done in `metric_srid` (default EPSG:4544, CGCS2000 3-degree Gauss-Kruger CM 105E, which
-- covers this border); lengths and areas are then measured on the ellipsoid (geography).
CREATE FUNCTION derive_border(
    width_m double precision,
    tolerance_m double precision DEFAULT 1.0,
    metric_srid integer DEFAULT 4544
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM border;
    CREATE TEMP TABLE _districts ON COMMIT DROP AS
        SELECT code, ST_Transform(geom, metric_srid) AS m FROM areas WHERE level = 'district';

    INSERT INTO border (id, kind, side, sides, length_m, geom)
    SELECT 'line:' || a.code || ':' || b.code, 'line', NULL, ARRAY[a.code, b.code],
           ST_Length(ST_Transform(l.m, 4326)::geography), ST_Transform(l.m, 4326)
    FROM _districts a
    JOIN _districts b ON a.code < b.code AND ST_DWithin(a.m, b.m, tolerance_m)
    CROSS JOIN LATERAL (
        SELECT ST_LineMerge(ST_CollectionExtract(
                   ST_Intersection(ST_Boundary(a.m), ST_Buffer(b.m, tolerance_m)), 2)) AS m
    ) l
    WHERE NOT ST_IsEmpty(l.m);

    INSERT INTO border (id, kind, side, sides, width_m, area_m2, geom)
    SELECT 'zone:' || a.code, 'zone', a.code, ARRAY[a.code] || o.codes, width_m,
           ST_Area(z.geom::geography), z.geom
    FROM _districts a
    CROSS JOIN LATERAL (
        SELECT array_agg(o.code ORDER BY o.code) AS codes,
               ST_Union(ST_Buffer(o.m, width_m, 16)) AS buf
        FROM _districts o
        WHERE o.code <> a.code AND ST_DWithin(a.m, o.m, width_m)
    ) o
    CROSS JOIN LATERAL (
        SELECT ST_Multi(ST_CollectionExtract(ST_MakeValid(
                   ST_Transform(ST_Intersection(a.m, o.buf), 4326)), 3)) AS geom
    ) z
    WHERE o.codes IS NOT NULL;

    DROP TABLE _districts;
    SELECT count(*) INTO n FROM border;
    RETURN n;
END;
$$;
