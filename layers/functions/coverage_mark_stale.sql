CREATE OR REPLACE FUNCTION coverage_mark_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE coverage_state SET stale = true WHERE NOT stale;
    RETURN NULL;
END;
$$;
