-- A radius in degrees that surely contains `p_metres` around latitude `p_lat` (an index
-- prefilter): the shortest degree of latitude on the ellipsoid, widened by the cosine of a
-- latitude one degree nearer the pole, and 1 % more.
CREATE OR REPLACE FUNCTION jointgrid_degrees(p_metres double precision, p_lat double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_metres / (110574.0 * greatest(cos(radians(least(abs(p_lat) + 1.0, 89.0))), 0.01)) * 1.01;
