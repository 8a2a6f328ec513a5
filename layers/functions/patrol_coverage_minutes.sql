-- Patrolled time per cell, Asia/Shanghai day and team in [p_since, p_until): the time along
-- track segments (two consecutive good fixes of one session) inside the cell, a segment's
-- time shared out by the part of its length inside each cell (constant speed along it); a
-- segment of a standing device counts whole for the cell it stands in.
CREATE OR REPLACE FUNCTION patrol_coverage_minutes(p_since timestamptz, p_until timestamptz, p_gap_s double precision)
RETURNS TABLE (cell text, cell_side text, day date, team text, team_side text, minutes double precision)
LANGUAGE sql STABLE AS $$
    WITH f AS (
        SELECT p.device, p.team, p.side, p.time, p.geom, s.id AS session
        FROM positions p
        JOIN patrol_sessions s
          ON s.device = p.device AND p.time BETWEEN s.started_at AND s.ended_at
        WHERE p.time >= p_since - make_interval(secs => p_gap_s)
          AND p.time < p_until + make_interval(secs => p_gap_s)
          AND s.ended_at >= p_since - make_interval(secs => p_gap_s)
          AND s.started_at < p_until
          AND p.flags = '{}'
    ), seg AS (
        SELECT team, side, time AS t0, geom AS g0,
               lead(time) OVER w AS t1, lead(geom) OVER w AS g1
        FROM f WINDOW w AS (PARTITION BY session ORDER BY time)
    ), s AS (
        SELECT team, side, t0, t1,
               CASE WHEN ST_Equals(g0, g1) THEN g0 ELSE ST_MakeLine(g0, g1) END AS piece,
               extract(epoch FROM least(t1, p_until) - greatest(t0, p_since)) AS overlap_s,
               extract(epoch FROM t1 - t0) AS dur_s
        FROM seg
        WHERE t1 IS NOT NULL AND t1 > p_since AND t0 < p_until AND t1 > t0
    )
    SELECT c.id, c.side, (greatest(s.t0, p_since) AT TIME ZONE 'Asia/Shanghai')::date, s.team, s.side,
           sum(s.overlap_s / 60.0 * CASE WHEN GeometryType(s.piece) = 'POINT' THEN 1.0
               ELSE ST_Length(ST_Intersection(c.geom, s.piece)::geography)
                    / NULLIF(ST_Length(s.piece::geography), 0) END)
    FROM s JOIN coverage_cells c ON ST_Intersects(c.geom, s.piece)
    GROUP BY 1, 2, 3, 4, 5
$$;
