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

-- derive_border(): layers/functions/derive_border.sql
