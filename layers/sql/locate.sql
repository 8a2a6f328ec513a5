-- Location facts for one point, in one round trip (see location_facts() in migrations 0006, 0008).
SELECT location_facts(
    p_lon => %(lon)s,
    p_lat => %(lat)s,
    p_radius_m => %(radius_m)s,
    p_radius_deg => %(radius_deg)s,
    p_mechanism => %(mechanism)s::text,
    p_extent => ST_GeomFromEWKB(%(extent)s::bytea),
    p_category => %(category)s::text,
    p_dup_radius_m => %(dup_radius_m)s::float8,
    p_dup_radius_deg => %(dup_radius_deg)s::float8,
    p_dup_since => %(dup_since)s::timestamptz,
    p_sides => %(sides)s::text[],
    p_teams_if_cross => %(teams_if_cross)s::boolean
) AS facts
