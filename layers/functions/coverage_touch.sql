-- Mark the cells a piece of track touched as patrolled at `p_at` by `p_team` of `p_side`
-- (later patrols win); return the length of the piece inside cells, metres on the ellipsoid.
CREATE OR REPLACE FUNCTION coverage_touch(p_piece geometry, p_at timestamptz, p_team text, p_side text)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    inside double precision := 0;
BEGIN
    UPDATE coverage_cells SET last_patrolled_at = p_at, last_team = p_team, last_side = p_side
    WHERE ST_Intersects(geom, p_piece) AND (last_patrolled_at IS NULL OR last_patrolled_at < p_at);
    IF GeometryType(p_piece) = 'LINESTRING' THEN
        SELECT COALESCE(sum(ST_Length(ST_Intersection(geom, p_piece)::geography)), 0) INTO inside
        FROM coverage_cells WHERE ST_Intersects(geom, p_piece);
    END IF;
    RETURN inside;
END;
$$;
