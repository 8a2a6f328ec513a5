-- The location facts of many cases in one statement (the set-based side of re-routing).
-- Parameters: open_only, radius_m, lat_max (for a safe degree radius), categories[], mechanisms[].
WITH m AS (
    SELECT * FROM unnest(%(categories)s::text[], %(mechanisms)s::text[]) AS m(category, mechanism)
)
SELECT i.id::text AS id, i.code, i.status, i.side, i.category, i.severity, i.occurred_at,
       i.input, i.sides, i.reasons, i.mechanism, i.teams, i.contacts,
       ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, ST_AsBinary(i.extent) AS extent,
       location_facts(
           p_lon => ST_X(i.geom),
           p_lat => ST_Y(i.geom),
           p_radius_m => %(radius_m)s,
           p_radius_deg => %(radius_deg)s,
           p_mechanism => m.mechanism,
           p_extent => i.extent
       ) AS facts
FROM incidents i
JOIN m USING (category)
WHERE NOT %(open_only)s
   OR i.status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')
ORDER BY i.id
