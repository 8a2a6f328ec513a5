-- The cases to re-route (all, or the open ones), streamed with COPY by the batch re-route.
-- The stored routing comes out as its signature (mechanism, sides, team codes, and an md5 of
-- the sorted contacts: the column `routing_sig`, kept by PostgreSQL since migration 0009), so
-- the client compares without parsing every JSON document; the parties as their JSON array.
-- Parameter: open_only.
-- The WHERE clause stays last: layers.bulk.reroute_cases appends the candidates' filter to it.
SELECT i.id, i.code, i.status, i.category, i.severity,
       extract(epoch FROM i.occurred_at) AS occurred,
       ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat,
       coalesce(encode(ST_AsBinary(i.extent), 'hex'), '') AS extent,
       coalesce(i.input ->> 'parties_sides', '') AS parties,
       split_part(i.routing_sig, E'\x1d', 1) AS old_mechanism,
       split_part(i.routing_sig, E'\x1d', 2) AS old_sides,
       split_part(i.routing_sig, E'\x1d', 3) AS old_teams,
       split_part(i.routing_sig, E'\x1d', 4) AS old_contacts
FROM incidents i
WHERE (NOT %(open_only)s
       OR i.status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved'))
