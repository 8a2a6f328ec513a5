-- A stable id for a member named in a roster: re-seeding the same team keeps the same ids.
CREATE OR REPLACE FUNCTION member_id(p_team text, p_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'M' || substr(md5(p_team || '/' || p_name), 1, 11)
$$;
