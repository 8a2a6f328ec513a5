-- Single incidents in the map's bounding box {env}, newest first, as (fid, geom, props) rows.
-- `key` changes whenever the case does, so the map redraws exactly the markers that changed.
-- Overdue is counted as the escalation pass counts it: open and past its due time.
SELECT i.id::text AS fid,
       i.geom,
       json_build_object(
           'kind', 'incident',
           'id', i.id,
           'key', i.id::text || '@' || extract(epoch FROM i.updated_at)::text,
           'code', i.code,
           'status', i.status,
           'category', i.category,
           'severity', i.severity,
           'mechanism', i.mechanism,
           'lead_side', i.lead_side,
           'sides', i.sides,
           'cross_boundary', i.cross_boundary,
           'due_at', i.due_at,
           'overdue', (i.status = ANY (%(open)s) AND i.due_at < %(now)s),
           'escalation_level', i.escalation_level
       ) AS props
FROM incidents i
WHERE i.geom && {env} AND {where}
ORDER BY i.reported_at DESC
LIMIT 100000
