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
        SELECT row_number() OVER () AS k, team, side, t0,
               CASE WHEN ST_Equals(g0, g1) THEN g0 ELSE ST_MakeLine(g0, g1) END AS piece,
               extract(epoch FROM least(t1, p_until) - greatest(t0, p_since)) AS overlap_s
        FROM seg
        WHERE t1 IS NOT NULL AND t1 > p_since AND t0 < p_until AND t1 > t0
    ), hit AS (  -- each segment against the pieces of the cells near it
        SELECT s.k, c.cell_id, c.side AS cell_side,
               CASE WHEN GeometryType(s.piece) = 'POINT' THEN NULL
                    ELSE ST_Length(ST_Intersection(c.geom, s.piece)::geography) END AS inside_m
        FROM s JOIN coverage_cell_parts c ON ST_Intersects(c.geom, s.piece)
    ), per_cell AS (  -- a standing device on the seam of two pieces counts once
        SELECT k, cell_id, min(cell_side) AS cell_side, sum(inside_m) AS inside_m
        FROM hit GROUP BY k, cell_id
    )
    SELECT h.cell_id, h.cell_side, (greatest(s.t0, p_since) AT TIME ZONE 'Asia/Shanghai')::date,
           s.team, s.side,
           sum(s.overlap_s / 60.0 * CASE WHEN GeometryType(s.piece) = 'POINT' THEN 1.0
               ELSE h.inside_m / NULLIF(ST_Length(s.piece::geography), 0) END)
    FROM per_cell h JOIN s ON s.k = h.k
    GROUP BY 1, 2, 3, 4, 5
$$;
