-- needs: side_parts_sync
-- Province scale: about 200,000 grids, hundreds of sides, millions of cases.
--
-- 1. `side_parts`: each district cut into pieces of at most 64 vertices (ST_Subdivide), kept in
--    step with `areas` by a trigger. Point-in-side and point-to-side distance then touch a few
--    small pieces found through the index, instead of a 2,500-vertex outline per side.
-- 2. location_facts() v2: the sides it reports are those containing the point, those within
--    the radius (the border zone), the nearest other side, and any side named in `p_sides`
--    (a report's parties) — not every side of the province. Nearest grids and police grids are
--    looked up only for the sides a decision can involve (containing, within the radius,
--    asked for), not for a far "nearest other side". plpgsql keeps the plan of the one query.
-- 3. A partial GiST index on open cases for the duplicate search.
--
-- Distances from a point to polygons it lies outside are measured to their boundary: the
-- same number, but geography's point-to-polygon distance first runs a point-in-polygon test
-- on the sphere, which costs about seven times the distance itself.

CREATE TABLE side_parts (
    id   bigserial PRIMARY KEY,
    side text NOT NULL,
    geom geometry(Polygon, 4326) NOT NULL
);
CREATE INDEX side_parts_geom_gix ON side_parts USING gist (geom);
CREATE INDEX side_parts_side_idx ON side_parts (side);

-- side_parts_sync(): layers/functions/side_parts_sync.sql
CREATE TRIGGER areas_side_parts AFTER INSERT OR UPDATE OR DELETE ON areas
    FOR EACH ROW EXECUTE FUNCTION side_parts_sync();

INSERT INTO side_parts (side, geom)
SELECT code, (ST_Dump(ST_Subdivide(geom, 64))).geom FROM areas WHERE level = 'district';

CREATE INDEX incidents_open_geom_gix ON incidents USING gist (geom)
    WHERE status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved');

DROP FUNCTION IF EXISTS location_facts(double precision, double precision, double precision,
    double precision, text, geometry, text, double precision, double precision, timestamptz);

-- location_facts(): replaced by jointgrid_facts() (layers/functions/jointgrid_facts.sql, 0018)

-- 4. The distribution column of cases is their intake side (`side`), which never changes:
--    a sharded PostgreSQL (Citus) cannot move a row between shards by UPDATE. The lead side
--    may move on a re-route (a boundary change), so it lives in `lead_side` alone. New case
--    ids embed the intake side (first group: the side code, zero-padded), so a look-up by id
--    names its shard. See docs/scaling.md.
ALTER TABLE incidents DROP CONSTRAINT IF EXISTS incidents_check;
COMMENT ON COLUMN incidents.side IS
    'intake side: the lead side when reported; never changes (distribution column)';
COMMENT ON COLUMN incidents.lead_side IS 'the side leading the case now (may move on a re-route)';
CREATE INDEX incidents_side_id_idx ON incidents (side, id);

-- 5. Few cases carry an extent: index only those (every report paid a GiST insert of NULL).
DROP INDEX IF EXISTS incidents_extent_gix;
CREATE INDEX incidents_extent_gix ON incidents USING gist (extent) WHERE extent IS NOT NULL;
