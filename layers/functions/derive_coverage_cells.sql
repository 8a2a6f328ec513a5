-- Re-derive the cells from the border (stretches of `p_cell_m` metres, EPSG:4544); returns
-- how many. Patrol history kept in the cells (last patrolled) starts again with new cells.
CREATE OR REPLACE FUNCTION derive_coverage_cells(p_cell_m double precision DEFAULT NULL, metric_srid integer DEFAULT 4544)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    cell double precision;
BEGIN
    PERFORM pg_advisory_xact_lock(7311022);
    IF p_cell_m IS NOT NULL THEN
        UPDATE coverage_state SET cell_m = p_cell_m;
    END IF;
    SELECT cell_m INTO cell FROM coverage_state;
    DELETE FROM coverage_cells;
    INSERT INTO coverage_cells (id, side, line_id, seq, geom, area_m2)
    WITH parts AS (
        SELECT b.id AS line_id, b.sides, d.path[1] AS part, d.geom AS m
        FROM border b
        CROSS JOIN LATERAL ST_Dump(ST_Transform(b.geom, metric_srid)) d
        WHERE b.kind = 'line' AND GeometryType(d.geom) = 'LINESTRING' AND ST_Length(d.geom) > 0
    ), pts AS (
        SELECT p.line_id, p.sides, p.part, i,
               ST_LineInterpolatePoint(p.m, (i + 0.5) / k) AS pt
        FROM parts p
        CROSS JOIN LATERAL (SELECT greatest(1, round(ST_Length(p.m) / cell))::integer AS k) kk
        CROSS JOIN LATERAL generate_series(0, kk.k - 1) i
    ), zones AS (
        SELECT z.side, ST_Transform(z.geom, metric_srid) AS m FROM border z WHERE z.kind = 'zone'
    ), zpts AS (
        SELECT z.side, z.m AS zone, p.line_id, p.part, p.i, p.pt,
               row_number() OVER (PARTITION BY z.side ORDER BY p.line_id, p.part, p.i) AS seq
        FROM zones z JOIN pts p ON z.side = ANY (p.sides)
    ), regions AS (
        SELECT side, (ST_Dump(ST_VoronoiPolygons(ST_Collect(pt), 0,
                          ST_Expand(ST_Envelope(ST_Collect(zone)), 1000)))).geom AS region
        FROM zpts GROUP BY side HAVING count(*) > 1
    ), cells AS (
        SELECT zp.side, zp.line_id, zp.seq, ST_Intersection(r.region, zp.zone) AS m
        FROM zpts zp JOIN regions r ON r.side = zp.side AND ST_Intersects(r.region, zp.pt)
        UNION ALL
        SELECT zp.side, zp.line_id, zp.seq, zp.zone
        FROM zpts zp WHERE NOT EXISTS (SELECT 1 FROM zpts o WHERE o.side = zp.side AND o.seq <> zp.seq)
    )
    SELECT 'c:' || side || ':' || lpad(seq::text, 5, '0'), side, line_id, seq,
           ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_Transform(m, 4326)), 3)), ST_Area(m)
    FROM cells
    WHERE NOT ST_IsEmpty(m) AND ST_Area(m) > 1;

    INSERT INTO coverage_cell_parts (cell_id, side, geom)
    SELECT c.id, c.side, d.geom
    FROM coverage_cells c
    CROSS JOIN LATERAL ST_Subdivide(c.geom, 32) AS d(geom)
    WHERE GeometryType(d.geom) = 'POLYGON';

    UPDATE coverage_cells c SET grid = (
        SELECT g.code FROM grids g
        WHERE ST_Intersects(g.geom, c.geom)
        ORDER BY ST_Area(ST_Intersection(g.geom, c.geom)::geography) DESC, g.code
        LIMIT 1);
    UPDATE coverage_state SET stale = false;
    SELECT count(*) INTO n FROM coverage_cells;
    RETURN n;
END;
$$;
