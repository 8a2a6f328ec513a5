-- Bring the sessions of `p_device` up to date with its fixes from `p_from` on; `p_gap_s` is
-- the silence that ends a session. Returns how many fixes it placed.
CREATE OR REPLACE FUNCTION patrol_apply(p_device text, p_from timestamptz, p_gap_s double precision)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s        patrol_sessions%ROWTYPE;
    has_s    boolean;
    dirty    boolean := false;
    resume   timestamptz := p_from;
    f        record;
    mk       record;
    has_mk   boolean;
    seg      geometry;
    n        integer := 0;
BEGIN
    PERFORM coverage_cells_ready();
    SELECT * INTO s FROM patrol_sessions
    WHERE device = p_device AND started_at < p_from ORDER BY started_at DESC LIMIT 1;
    has_s := FOUND;
    IF has_s AND s.ended_at >= p_from THEN
        -- a fix inside a stored session: that session and those after it are built again
        resume := s.started_at;
        DELETE FROM patrol_sessions WHERE device = p_device AND started_at >= s.started_at;
        has_s := false;
    ELSE
        DELETE FROM patrol_sessions WHERE device = p_device AND started_at >= p_from;
    END IF;

    FOR f IN
        SELECT p.time, p.geom, p.team, p.side, p.member_id FROM positions p
        WHERE p.device = p_device AND p.time >= resume AND p.flags = '{}'
        ORDER BY p.time
    LOOP
        SELECT m.kind, m.at INTO mk FROM patrol_marks m
        WHERE m.device = p_device AND m.at <= f.time ORDER BY m.at DESC LIMIT 1;
        has_mk := FOUND;
        IF has_mk AND mk.kind = 'stop' THEN
            CONTINUE;  -- stopped: the fix is kept, but is on no patrol
        END IF;
        IF has_s AND extract(epoch FROM f.time - s.ended_at) <= p_gap_s
           AND NOT (has_mk AND mk.at > s.ended_at) THEN
            seg := ST_MakeLine(s.last_geom, f.geom);
            s.border_m := s.border_m + coverage_touch(seg, f.time, f.team, f.side);
            s.length_m := s.length_m + ST_Length(seg::geography);
            s.track := CASE WHEN GeometryType(s.track) = 'POINT' THEN ST_MakeLine(s.track, f.geom)
                            ELSE ST_AddPoint(s.track, f.geom) END;
            s.ended_at := f.time;
            s.fixes := s.fixes + 1;
            s.last_geom := f.geom;
            s.team := f.team;
            dirty := true;
        ELSE
            IF has_s AND dirty THEN
                UPDATE patrol_sessions SET ended_at = s.ended_at, fixes = s.fixes, track = s.track,
                    last_geom = s.last_geom, length_m = s.length_m, border_m = s.border_m
                WHERE id = s.id;
            END IF;
            PERFORM coverage_touch(f.geom, f.time, f.team, f.side);
            INSERT INTO patrol_sessions (device, side, team, member_id, started_at, ended_at,
                                         fixes, track, last_geom, explicit)
            VALUES (p_device, f.side, f.team, f.member_id, f.time, f.time, 1, f.geom, f.geom,
                    has_mk AND mk.kind = 'start' AND mk.at > COALESCE(s.ended_at, '-infinity'))
            RETURNING * INTO s;
            has_s := true;
            dirty := false;
        END IF;
        n := n + 1;
    END LOOP;
    IF has_s AND dirty THEN
        UPDATE patrol_sessions SET ended_at = s.ended_at, fixes = s.fixes, track = s.track,
            last_geom = s.last_geom, length_m = s.length_m, border_m = s.border_m
        WHERE id = s.id;
    END IF;
    RETURN n;
END;
$$;
