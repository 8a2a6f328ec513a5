-- The location facts of one point: the facts engine (jointgrid_facts(), migration 0018) on an
-- array of one; its teams' fixes as of `as_of` (NULL: by bases alone).
SELECT f.facts FROM jointgrid_facts(
    p_lon => ARRAY[%(lon)s::float8],
    p_lat => ARRAY[%(lat)s::float8],
    p_radius_m => %(radius_m)s::float8,
    p_mechanism => ARRAY[%(mechanism)s::text],
    p_extent => ARRAY[ST_GeomFromEWKB(%(extent)s::bytea)],
    p_sides => ARRAY[%(sides)s::text],
    p_teams_if_cross => %(teams_if_cross)s::boolean,
    p_far => true,
    p_category => ARRAY[%(category)s::text],
    p_dup_radius_m => %(dup_radius_m)s::float8,
    p_dup_since => %(dup_since)s::timestamptz,
    p_as_of => ARRAY[%(as_of)s::timestamptz],
    p_fix_max_age_s => %(fix_max_age_s)s::float8
) f
