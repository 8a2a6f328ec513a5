-- Make the day partitions of `positions` from `p_days_back` days ago to `p_days_ahead` days
-- ahead (days in UTC), and drop those wholly older than `p_retention_days`. Returns what it
-- did, e.g. {"created": [...], "dropped": [...]}. SECURITY DEFINER: the server's login owns
-- no table and may not create one; this function (owned by the migrator) is the one thing it
-- may do to the partitions.
CREATE OR REPLACE FUNCTION positions_maintain(
    p_retention_days integer, p_days_back integer DEFAULT NULL, p_days_ahead integer DEFAULT 2
) RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    today   date := (now() AT TIME ZONE 'UTC')::date;
    d       date;
    name    text;
    created text[] := '{}';
    dropped text[] := '{}';
    part    record;
    upper_d date;
BEGIN
    IF p_retention_days IS NULL OR p_retention_days < 1 THEN
        RAISE EXCEPTION 'retention must be at least one day' USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(7311021);
    FOR part IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'positions'::regclass
    LOOP
        upper_d := to_date(substring(part.relname FROM 'positions_p([0-9]{8})'), 'YYYYMMDD') + 1;
        IF upper_d IS NOT NULL AND upper_d <= today - p_retention_days THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped || part.relname::text;
        END IF;
    END LOOP;
    d := today - LEAST(COALESCE(p_days_back, p_retention_days), p_retention_days);
    WHILE d <= today + p_days_ahead LOOP
        name := 'positions_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF positions FOR VALUES FROM (%L) TO (%L)',
                name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO jointgrid_app', name);
            created := created || name;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN jsonb_build_object('created', to_jsonb(created), 'dropped', to_jsonb(dropped));
END;
$$;
