-- The shared line between every pair of sides (district boundaries within `tolerance_m` of
-- the other district), and each side's strip within `width_m` of any other side. Metric work
-- is done in `metric_srid` (default EPSG:4544, CGCS2000 3-degree Gauss-Kruger CM 105E, which
-- covers this border); lengths and areas are then measured on the ellipsoid (geography).
CREATE OR REPLACE FUNCTION derive_border(
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
