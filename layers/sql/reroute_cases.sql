-- The cases to re-route (all, or the open ones), streamed with COPY by the batch re-route,
-- each with its location facts from the facts engine (jointgrid_facts(), migration 0018), as
-- the report path gathers them (teams only where the case can be cross-boundary), with
-- `p_far` as asked: without it, the facts of a plain case name no far side and repeat
-- exactly from case to case. The facts come as their md5, and their text (hex) only on the
-- first case with that md5. The stored routing comes out as its signature (the column
-- `routing_sig`); the parties as their JSON array. The teams' fixes are read as of the time the
-- case was decided (the stored routing's `decided_at`; for a routing a re-route rewrote, the
-- time it was reported, which the first decision read its fixes as of), so that a re-route
-- reads the positions its decision read and the team chosen stays the one chosen then.
-- Parameters: open_only, radius_m, far, categories[], mechanisms[], fix_max_age_s. The placeholder below is replaced
-- by the candidates' filter (layers.bulk.reroute_cases) or nothing.
WITH c AS MATERIALIZED (
    SELECT row_number() OVER ()::integer AS ord, i.id, i.code, i.status, i.category,
           i.severity, i.occurred_at, i.geom, i.extent, i.input, i.routing_sig,
           CASE WHEN (i.routing ->> 'rerouted')::boolean THEN i.reported_at
                ELSE coalesce((i.routing ->> 'decided_at')::timestamptz, i.reported_at)
           END AS as_of
    FROM incidents i
    WHERE (NOT %(open_only)s OR jointgrid_is_open(i.status))
    {candidates}
),
a AS (
    SELECT array_agg(ST_X(c.geom) ORDER BY c.ord) AS lon,
           array_agg(ST_Y(c.geom) ORDER BY c.ord) AS lat,
           array_agg(m.mechanism ORDER BY c.ord) AS mechanism,
           array_agg(c.extent ORDER BY c.ord) AS extent,
           array_agg(CASE WHEN jsonb_typeof(c.input -> 'parties_sides') = 'array'
                          THEN array_to_string(ARRAY(
                              SELECT jsonb_array_elements_text(c.input -> 'parties_sides')),
                              E'\x1f') END ORDER BY c.ord) AS parties,
           array_agg(c.as_of ORDER BY c.ord) AS as_of
    FROM c LEFT JOIN unnest(%(categories)s::text[], %(mechanisms)s::text[])
                     AS m(category, mechanism) USING (category)
),
f AS (
    SELECT f.ord, md5(f.facts::text) AS key, f.facts::text AS facts
    FROM a, jointgrid_facts(a.lon, a.lat, %(radius_m)s, a.mechanism, a.extent, a.parties,
                            p_teams_if_cross => true, p_far => %(far)s, p_as_of => a.as_of,
                            p_fix_max_age_s => %(fix_max_age_s)s) f
)
SELECT c.id, c.code, c.status, c.category, c.severity,
       extract(epoch FROM c.occurred_at) AS occurred,
       ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat,
       coalesce(encode(ST_AsBinary(c.extent), 'hex'), '') AS extent,
       coalesce(c.input ->> 'parties_sides', '') AS parties,
       split_part(c.routing_sig, E'\x1d', 1) AS old_mechanism,
       split_part(c.routing_sig, E'\x1d', 2) AS old_sides,
       split_part(c.routing_sig, E'\x1d', 3) AS old_teams,
       split_part(c.routing_sig, E'\x1d', 4) AS old_contacts,
       f.key,
       CASE WHEN row_number() OVER (PARTITION BY f.key ORDER BY c.ord) = 1
            THEN encode(convert_to(f.facts, 'UTF8'), 'hex') ELSE '' END AS facts
FROM c JOIN f USING (ord)
ORDER BY c.ord
