-- The cases to re-route (all, or the open ones), streamed with COPY by the batch re-route.
-- The stored routing comes out as a compact signature (mechanism, sides, team codes, and an
-- md5 of the sorted contacts) so the client compares without parsing every JSON document.
-- Parameter: open_only.
SELECT i.id, i.code, i.status, i.category, i.severity,
       extract(epoch FROM i.occurred_at) AS occurred,
       ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat,
       coalesce(encode(ST_AsBinary(i.extent), 'hex'), '') AS extent,
       coalesce(array_to_string(ARRAY(
           SELECT jsonb_array_elements_text(i.input -> 'parties_sides')), ','), '') AS parties,
       coalesce(i.mechanism, '') AS old_mechanism,
       array_to_string(i.sides, ',') AS old_sides,
       coalesce((SELECT string_agg(t ->> 'code', ',' ORDER BY o)
                 FROM jsonb_array_elements(i.teams) WITH ORDINALITY AS x(t, o)), '') AS old_teams,
       md5(coalesce((SELECT string_agg(k, E'\x1e' ORDER BY k COLLATE "C") FROM (
           SELECT concat_ws(E'\x1f', c ->> 'side', c ->> 'role', c ->> 'unit_code',
                            coalesce(c ->> 'name', '')) AS k
           FROM jsonb_array_elements(i.contacts) c) s), '')) AS old_contacts
FROM incidents i
WHERE NOT %(open_only)s
   OR i.status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')
