-- Bring the sessions of `p_device` up to date with its fixes from `p_from` on; `p_gap_s` is
-- the silence that ends a session. Returns how many fixes it placed.
--
-- Without marks (explicit starts and stops) the fixes are placed in sessions set-wise, in one
-- statement; with marks, one by one. The loop only places fixes in sessions (a silence or a mark starts a new one) and appends
-- their points to the tracks; the geometry work on the pieces of track placed (lengths on the
-- ellipsoid, the border cells touched and their "last patrolled", the length inside them) is
-- one set-wise statement at the end, so a batch of fixes costs a few statements, not a few
-- per fix.
CREATE OR REPLACE FUNCTION patrol_apply(p_device text, p_from timestamptz, p_gap_s double precision)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s         patrol_sessions%ROWTYPE;
    has_s     boolean;
    resume    timestamptz := p_from;
    f         record;
    mk        record;
    has_marks boolean;
    has_mk    boolean;
    n         integer := 0;
    pts       geometry[] := '{}';  -- points appended to the current session, not yet written
    seg_sid   bigint[] := '{}';
    seg_t     timestamptz[] := '{}';
    seg_team  text[] := '{}';
    seg_side  text[] := '{}';
    seg_a     geometry[] := '{}';
    seg_b     geometry[] := '{}';
    seg_from  geometry;            -- where the fix's piece of track starts
    a_grp     integer[];
    k0        integer;
BEGIN
    -- one device's sessions are rebuilt by one transaction at a time (the patrol worker, an
    -- explicit start or stop): each reads the sessions the other wrote
    PERFORM pg_advisory_xact_lock(hashtext('patrol_apply'), hashtext(p_device));
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
    has_marks := EXISTS (SELECT 1 FROM patrol_marks WHERE device = p_device);
    SELECT NULL::text AS kind, NULL::timestamptz AS at INTO mk;  -- assigned, for the tests below

    IF NOT has_marks THEN
        -- No start or stop marks (the usual case): the same placement, set-wise. A fix
        -- starts a session when it is the first with no session to extend, or comes after a
        -- silence longer than the gap; `grp` numbers the sessions, 0 being the one extended.
        WITH fix AS (
            SELECT p.time AS t, p.geom AS g, p.team, p.side, p.member_id,
                   lag(p.time) OVER (ORDER BY p.time) AS pt
            FROM positions p
            WHERE p.device = p_device AND p.time >= resume AND p.flags = '{}'
        ), brk AS (
            SELECT x.*, CASE WHEN x.pt IS NULL
                             THEN NOT (has_s AND extract(epoch FROM x.t - s.ended_at) <= p_gap_s)
                             ELSE extract(epoch FROM x.t - x.pt) > p_gap_s END AS starts
            FROM fix x
        ), grp AS (
            SELECT y.*, sum(y.starts::integer) OVER (ORDER BY y.t) AS grp FROM brk y
        ), grp0 AS (
            SELECT z.*, min(z.t) OVER (PARTITION BY z.grp) AS t0 FROM grp z
        ), ins AS (
            INSERT INTO patrol_sessions (device, side, team, member_id, started_at, ended_at,
                                         fixes, track, last_geom, explicit)
            SELECT p_device, (array_agg(w.side ORDER BY w.t))[1],
                   (array_agg(w.team ORDER BY w.t DESC))[1],
                   (array_agg(w.member_id ORDER BY w.t))[1], min(w.t), max(w.t), count(*),
                   CASE WHEN count(*) = 1 THEN (array_agg(w.g))[1]
                        ELSE ST_MakeLine(array_agg(w.g ORDER BY w.t)) END,
                   (array_agg(w.g ORDER BY w.t DESC))[1], false
            FROM grp0 w WHERE w.grp > 0 GROUP BY w.grp
            RETURNING id, started_at
        ), seg AS (
            SELECT v.t, v.g, v.team, v.side, v.grp,
                   CASE WHEN v.grp = 0 THEN s.id ELSE i.id END AS sid,
                   CASE WHEN v.starts THEN v.g
                        ELSE COALESCE(lag(v.g) OVER (ORDER BY v.t), s.last_geom) END AS a
            FROM grp0 v LEFT JOIN ins i ON v.grp > 0 AND i.started_at = v.t0
        )
        SELECT array_agg(sid ORDER BY t), array_agg(t ORDER BY t), array_agg(team ORDER BY t),
               array_agg(side ORDER BY t), array_agg(a ORDER BY t), array_agg(g ORDER BY t),
               array_agg(grp ORDER BY t)
        INTO seg_sid, seg_t, seg_team, seg_side, seg_a, seg_b, a_grp
        FROM seg;
        IF seg_sid IS NULL THEN
            RETURN 0;
        END IF;
        n := cardinality(seg_sid);
        IF a_grp[1] = 0 THEN  -- the first fixes extend the device's last session
            k0 := COALESCE(array_position(a_grp, 1) - 1, n);
            UPDATE patrol_sessions
            SET ended_at = seg_t[k0], fixes = fixes + k0,
                track = ST_MakeLine(ARRAY[track] || seg_b[1:k0]),
                last_geom = seg_b[k0], team = seg_team[k0]
            WHERE id = s.id;
        END IF;
    ELSE
        FOR f IN
            SELECT p.time, p.geom, p.team, p.side, p.member_id FROM positions p
            WHERE p.device = p_device AND p.time >= resume AND p.flags = '{}'
            ORDER BY p.time
        LOOP
            has_mk := false;
            IF has_marks THEN
                SELECT m.kind, m.at INTO mk FROM patrol_marks m
                WHERE m.device = p_device AND m.at <= f.time ORDER BY m.at DESC LIMIT 1;
                has_mk := FOUND;
            END IF;
            IF has_mk AND mk.kind = 'stop' THEN
                CONTINUE;  -- stopped: the fix is kept, but is on no patrol
            END IF;
            IF has_s AND extract(epoch FROM f.time - s.ended_at) <= p_gap_s
               AND NOT (has_mk AND mk.at > s.ended_at) THEN
                seg_from := s.last_geom;  -- the piece of track from the session's last fix
                pts := pts || f.geom;
                s.ended_at := f.time;
                s.fixes := s.fixes + 1;
                s.last_geom := f.geom;
                s.team := f.team;
            ELSE
                IF has_s AND cardinality(pts) > 0 THEN
                    UPDATE patrol_sessions SET ended_at = s.ended_at, fixes = s.fixes,
                        track = ST_MakeLine(ARRAY[track] || pts), last_geom = s.last_geom, team = s.team
                    WHERE id = s.id;
                END IF;
                pts := '{}';
                INSERT INTO patrol_sessions (device, side, team, member_id, started_at, ended_at,
                                             fixes, track, last_geom, explicit)
                VALUES (p_device, f.side, f.team, f.member_id, f.time, f.time, 1, f.geom, f.geom,
                        has_mk AND mk.kind = 'start' AND mk.at > COALESCE(s.ended_at, '-infinity'))
                RETURNING * INTO s;
                has_s := true;
                -- a session's first fix marks the cell it stands in as patrolled
                seg_from := f.geom;
            END IF;
            seg_sid := seg_sid || s.id;
            seg_t := seg_t || f.time;
            seg_team := seg_team || f.team;
            seg_side := seg_side || f.side;
            seg_a := seg_a || seg_from;
            seg_b := seg_b || f.geom;
            n := n + 1;
        END LOOP;
        IF has_s AND cardinality(pts) > 0 THEN
            UPDATE patrol_sessions SET ended_at = s.ended_at, fixes = s.fixes,
                track = ST_MakeLine(ARRAY[track] || pts), last_geom = s.last_geom, team = s.team
            WHERE id = s.id;
        END IF;
    END IF;
    IF cardinality(seg_sid) = 0 THEN
        RETURN n;
    END IF;

    WITH seg AS (
        SELECT u.sid, u.t, u.team, u.side,
               CASE WHEN ST_Equals(u.a, u.b) THEN u.a ELSE ST_MakeLine(u.a, u.b) END AS piece
        FROM unnest(seg_sid, seg_t, seg_team, seg_side, seg_a, seg_b) AS u(sid, t, team, side, a, b)
    ), near AS MATERIALIZED (
        -- the cells' pieces near the batch's track, each then tested against all its segments
        -- in a row: PostGIS prepares a geometry that is the first argument of calls in a row,
        -- so the tests cost a few microseconds, not a fresh GEOS geometry each
        SELECT c.cell_id, c.geom FROM coverage_cell_parts c
        WHERE c.geom && (SELECT ST_SetSRID(ST_Extent(piece)::geometry, 4326) FROM seg)
    ), hit AS (
        SELECT c.cell_id AS id, sg.sid, sg.t, sg.team, sg.side, sg.piece, c.geom, sg.covered
        FROM near c CROSS JOIN LATERAL (
            SELECT s2.sid, s2.t, s2.team, s2.side, s2.piece, ST_Covers(c.geom, s2.piece) AS covered
            FROM seg s2
            WHERE s2.piece && c.geom AND ST_Intersects(c.geom, s2.piece)
        ) sg
    ), cell_last AS (
        SELECT DISTINCT ON (id) id, t, team, side FROM hit ORDER BY id, t DESC
    ), touched AS (
        UPDATE coverage_cells c SET last_patrolled_at = l.t, last_team = l.team, last_side = l.side
        FROM cell_last l
        WHERE c.id = l.id AND (c.last_patrolled_at IS NULL OR c.last_patrolled_at < l.t)
        RETURNING 1
    ), inside AS (
        SELECT sid, sum(ST_Length(CASE WHEN covered THEN piece  -- inside one piece: no overlay
                                ELSE ST_Intersection(geom, piece) END::geography)) AS m
        FROM hit WHERE GeometryType(piece) = 'LINESTRING' GROUP BY sid
    ), walked AS (
        SELECT sid, sum(CASE WHEN GeometryType(piece) = 'LINESTRING'
                             THEN ST_Length(piece::geography) ELSE 0 END) AS m
        FROM seg GROUP BY sid
    )
    UPDATE patrol_sessions p
    SET length_m = p.length_m + w.m, border_m = p.border_m + COALESCE(i.m, 0)
    FROM walked w LEFT JOIN inside i ON i.sid = w.sid
    WHERE p.id = w.sid;
    RETURN n;
END;
$$;
