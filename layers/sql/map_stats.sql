-- The dashboard's figures for the cases matching {where}, as one JSON document.
-- Open: %(open)s (the statuses the escalation pass watches); closed: every other status.
-- Time-limit compliance: a case is on time when it was resolved by its due time, late when it
-- was resolved after it or is still open past it, and pending otherwise. Its resolution time is
-- its latest `resolve` event, or, for a resolved, verified or closed case that has none
-- (imported), its last update. Weeks start on Monday in China Standard Time.
WITH c AS (
    SELECT i.id, i.code, i.status, i.category, i.severity,
           coalesce(i.mechanism, 'none') AS mechanism, i.side, i.cross_boundary, i.reasons,
           i.grid_code, i.reported_at, i.updated_at, i.due_at, i.escalation_level,
           i.status = ANY (%(open)s) AS is_open,
           (i.status = ANY (%(open)s) AND i.due_at < %(now)s) AS is_overdue
    FROM incidents i
    WHERE {where}
),
resolve_events AS (
    SELECT e.incident_id AS id, max(e.at) AS at
    FROM incident_events e
    WHERE e.action = 'resolve'
    GROUP BY e.incident_id
),
timed AS (
    SELECT c.*,
           coalesce(r.at, CASE WHEN c.status IN ('resolved', 'verified', 'closed')
                               THEN c.updated_at END) AS resolved_at
    FROM c
    LEFT JOIN resolve_events r USING (id)
),
weeks AS (
    SELECT generate_series(
               date_trunc('week', %(now)s::timestamptz AT TIME ZONE 'Asia/Shanghai')
                   - (%(weeks)s - 1) * interval '1 week',
               date_trunc('week', %(now)s::timestamptz AT TIME ZONE 'Asia/Shanghai'),
               interval '1 week') AS week
),
reported_weekly AS (
    SELECT date_trunc('week', reported_at AT TIME ZONE 'Asia/Shanghai') AS week,
           count(*) AS reported, count(*) FILTER (WHERE cross_boundary) AS cross_boundary
    FROM c GROUP BY 1
),
closed_weekly AS (
    SELECT date_trunc('week', updated_at AT TIME ZONE 'Asia/Shanghai') AS week, count(*) AS closed
    FROM c WHERE status = 'closed' GROUP BY 1
),
resolved_weekly AS (
    SELECT date_trunc('week', resolved_at AT TIME ZONE 'Asia/Shanghai') AS week,
           count(*) AS resolved,
           count(*) FILTER (WHERE due_at IS NOT NULL AND resolved_at <= due_at) AS on_time
    FROM timed WHERE resolved_at IS NOT NULL GROUP BY 1
),
compliance AS (
    SELECT mechanism,
           count(*) FILTER (WHERE resolved_at IS NOT NULL AND resolved_at <= due_at) AS on_time,
           count(*) FILTER (WHERE resolved_at IS NOT NULL AND resolved_at > due_at) AS late,
           count(*) FILTER (WHERE resolved_at IS NULL AND is_overdue) AS overdue_open,
           count(*) FILTER (WHERE resolved_at IS NULL AND is_open AND NOT is_overdue) AS pending
    FROM timed
    WHERE due_at IS NOT NULL
    GROUP BY mechanism
)
SELECT json_build_object(
    'totals', (
        SELECT json_build_object(
            'cases', count(*),
            'open', count(*) FILTER (WHERE is_open),
            'closed', count(*) FILTER (WHERE NOT is_open),
            'overdue', count(*) FILTER (WHERE is_overdue),
            'escalated', count(*) FILTER (WHERE is_open AND escalation_level > 0),
            'cross_boundary', count(*) FILTER (WHERE cross_boundary),
            'cross_boundary_share', CASE WHEN count(*) > 0 THEN
                round(count(*) FILTER (WHERE cross_boundary)::numeric / count(*), 4) END
        ) FROM c),
    'by_mechanism', (
        SELECT coalesce(json_agg(r ORDER BY r.total DESC, r.mechanism), '[]') FROM (
            SELECT mechanism, count(*) FILTER (WHERE is_open) AS open,
                   count(*) FILTER (WHERE NOT is_open) AS closed,
                   count(*) FILTER (WHERE is_overdue) AS overdue,
                   count(*) FILTER (WHERE cross_boundary) AS cross_boundary, count(*) AS total
            FROM c GROUP BY mechanism) r),
    'by_side', (
        SELECT coalesce(json_agg(r ORDER BY r.side), '[]') FROM (
            SELECT side, count(*) FILTER (WHERE is_open) AS open,
                   count(*) FILTER (WHERE NOT is_open) AS closed,
                   count(*) FILTER (WHERE is_overdue) AS overdue,
                   count(*) FILTER (WHERE cross_boundary) AS cross_boundary, count(*) AS total
            FROM c GROUP BY side) r),
    'photos', (
        SELECT coalesce(json_agg(r ORDER BY r.side), '[]') FROM (
            SELECT side, count(*) FILTER (WHERE has) AS with_photos,
                   count(*) FILTER (WHERE NOT has) AS without_photos
            FROM (SELECT c.side, EXISTS (SELECT 1 FROM media m WHERE m.incident_id = c.id AND m.state <> 'refused') AS has
                  FROM c) h
            GROUP BY side) r),
    'by_status', (
        SELECT coalesce(json_agg(r ORDER BY array_position(%(statuses)s::text[], r.status)), '[]')
        FROM (SELECT status, bool_or(is_open) AS open, count(*) AS total FROM c GROUP BY status) r),
    'breakdown', (
        SELECT coalesce(json_agg(r ORDER BY r.mechanism, r.side,
                                 array_position(%(statuses)s::text[], r.status)), '[]')
        FROM (SELECT mechanism, side, status, bool_or(is_open) AS open, count(*) AS total
              FROM c GROUP BY mechanism, side, status) r),
    'compliance', (
        SELECT coalesce(json_agg(json_build_object(
                   'mechanism', mechanism, 'on_time', on_time, 'late', late,
                   'overdue_open', overdue_open, 'pending', pending,
                   'compliance', CASE WHEN on_time + late + overdue_open > 0 THEN
                       round(on_time::numeric / (on_time + late + overdue_open), 4) END)
                   ORDER BY mechanism), '[]')
        FROM compliance),
    'overdue', (
        SELECT coalesce(json_agg(r ORDER BY r.due_at, r.code), '[]') FROM (
            SELECT id, code, category, severity, status, mechanism, side, due_at,
                   round((extract(epoch FROM %(now)s::timestamptz - due_at) / 3600)::numeric, 1)
                       AS hours_overdue,
                   escalation_level
            FROM c WHERE is_overdue ORDER BY due_at, code LIMIT 500) r),
    'cross_boundary', (
        SELECT coalesce(json_agg(r ORDER BY r.cases DESC, r.reason), '[]') FROM (
            SELECT reason, count(*) AS cases FROM c, unnest(c.reasons) AS reason
            GROUP BY reason) r),
    'grids', (
        SELECT coalesce(json_agg(r ORDER BY r.total DESC, r.grid_code), '[]') FROM (
            SELECT c.grid_code, g.name, g.side, count(*) AS total,
                   count(*) FILTER (WHERE c.is_open) AS open,
                   count(*) FILTER (WHERE c.is_overdue) AS overdue
            FROM c LEFT JOIN grids g ON g.code = c.grid_code
            WHERE c.grid_code IS NOT NULL
            GROUP BY c.grid_code, g.name, g.side) r),
    'weekly', (
        SELECT json_agg(json_build_object(
                   'week', w.week::date,
                   'reported', coalesce(rw.reported, 0),
                   'cross_boundary', coalesce(rw.cross_boundary, 0),
                   'resolved', coalesce(sw.resolved, 0),
                   'resolved_on_time', coalesce(sw.on_time, 0),
                   'closed', coalesce(cw.closed, 0))
                   ORDER BY w.week)
        FROM weeks w
        LEFT JOIN reported_weekly rw ON rw.week = w.week
        LEFT JOIN resolved_weekly sw ON sw.week = w.week
        LEFT JOIN closed_weekly cw ON cw.week = w.week)
) AS stats
