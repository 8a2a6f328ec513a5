-- Store one device's fixes (already checked and flagged by the caller), once each per
-- (device, time), in one statement and so in one round trip: the fixes, the device's and its
-- team's latest good fix, and a row of `patrol_backlog` from which the patrol worker brings
-- the device's sessions and the cells up to date (`patrol_apply_backlog`, after the answer;
-- migration 0030). Returns how many fixes were new. Called alone in autocommit, it is its own
-- transaction, committed before the caller answers; inside a caller's transaction, it is part
-- of it.
--
-- The columns come as arrays, one element a fix; `p_fa` and `p_fs` are the flags `accuracy`
-- and `speed` (a flagged fix is stored but is no latest fix and on no track).
CREATE OR REPLACE FUNCTION positions_store(
    p_device text, p_side text, p_team text, p_member text, p_source text,
    p_t timestamptz[], p_x double precision[], p_y double precision[],
    p_a double precision[], p_s double precision[], p_b double precision[],
    p_alt double precision[], p_bat double precision[], p_fa boolean[], p_fs boolean[]
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n          integer;
    seen       timestamptz;
    first_good timestamptz;
    last_good  timestamptz;
    k          integer;
BEGIN
    WITH ins AS (
        INSERT INTO positions (device, time, side, team, member_id, geom, accuracy_m, speed_mps,
                               bearing, altitude_m, battery, flags, source)
        SELECT p_device, u.t, p_side, p_team, p_member, ST_SetSRID(ST_MakePoint(u.x, u.y), 4326),
               u.a, u.s, u.b, u.alt, u.bat,
               CASE WHEN u.fa OR u.fs
                    THEN array_remove(ARRAY[CASE WHEN u.fa THEN 'accuracy' END,
                                            CASE WHEN u.fs THEN 'speed' END], NULL)
                    ELSE '{}'::text[] END,
               p_source
        FROM unnest(p_t, p_x, p_y, p_a, p_s, p_b, p_alt, p_bat, p_fa, p_fs)
             AS u(t, x, y, a, s, b, alt, bat, fa, fs)
        ON CONFLICT (device, time) DO NOTHING
        RETURNING time, flags = '{}' AS good
    )
    SELECT count(*), max(time), min(time) FILTER (WHERE good), max(time) FILTER (WHERE good)
    INTO n, seen, first_good, last_good
    FROM ins;

    IF last_good IS NOT NULL THEN
        k := array_position(p_t, last_good);
        INSERT INTO device_latest AS l (device, side, team, member_id, time, geom, accuracy_m,
                                        speed_mps, seen_at)
        VALUES (p_device, p_side, p_team, p_member, last_good,
                ST_SetSRID(ST_MakePoint(p_x[k], p_y[k]), 4326), p_a[k], p_s[k], seen)
        ON CONFLICT (device) DO UPDATE SET
            time = greatest(l.time, EXCLUDED.time),
            geom = CASE WHEN EXCLUDED.time > l.time THEN EXCLUDED.geom ELSE l.geom END,
            accuracy_m = CASE WHEN EXCLUDED.time > l.time THEN EXCLUDED.accuracy_m ELSE l.accuracy_m END,
            speed_mps = CASE WHEN EXCLUDED.time > l.time THEN EXCLUDED.speed_mps ELSE l.speed_mps END,
            team = EXCLUDED.team, member_id = EXCLUDED.member_id,
            seen_at = greatest(l.seen_at, EXCLUDED.seen_at), updated_at = now();
        INSERT INTO team_latest AS tl (team, side, time, geom)
        VALUES (p_team, p_side, last_good, ST_SetSRID(ST_MakePoint(p_x[k], p_y[k]), 4326))
        ON CONFLICT (team) DO UPDATE SET time = EXCLUDED.time, geom = EXCLUDED.geom,
                                         updated_at = now()
        WHERE tl.time < EXCLUDED.time;
        INSERT INTO patrol_backlog (device, side, from_time) VALUES (p_device, p_side, first_good);
    ELSIF n > 0 THEN
        UPDATE device_latest SET seen_at = greatest(seen_at, seen) WHERE device = p_device;
    END IF;
    RETURN n;
END;
$$;
