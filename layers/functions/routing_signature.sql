-- Fields joined by U+001D: mechanism ('' for none), sides (comma-separated), team codes in
-- order (comma-separated), and the md5 of the contacts' (side, role, unit_code, name) joined
-- by U+001F, sorted bytewise and joined by U+001E. api.reroute.signature makes the same.
CREATE OR REPLACE FUNCTION routing_signature(p_mechanism text, p_sides text[], p_teams jsonb,
                                  p_contacts jsonb)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT concat_ws(E'\x1d',
    coalesce(p_mechanism, ''),
    coalesce(array_to_string(p_sides, ','), ''),
    coalesce((SELECT string_agg(t ->> 'code', ',' ORDER BY o)
              FROM jsonb_array_elements(p_teams) WITH ORDINALITY AS x(t, o)), ''),
    md5(coalesce((SELECT string_agg(k, E'\x1e' ORDER BY k COLLATE "C") FROM (
        SELECT concat_ws(E'\x1f', c ->> 'side', c ->> 'role', c ->> 'unit_code',
                         coalesce(c ->> 'name', '')) AS k
        FROM jsonb_array_elements(p_contacts) c) s), '')))
$$;
