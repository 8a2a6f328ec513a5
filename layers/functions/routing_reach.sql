-- Metres: how far from the case the features deciding its stored routing may lie, beyond the
-- border zone; 'Infinity' where routing looks at any distance.
CREATE OR REPLACE FUNCTION routing_reach(p_contacts jsonb, p_extent geometry, p_input jsonb,
                              p_distance_to_border_m double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE
    WHEN p_extent IS NOT NULL OR p_input ? 'parties_sides' OR p_distance_to_border_m = 0
        THEN 'Infinity'::double precision
    ELSE coalesce((SELECT max((c ->> 'distance_m')::double precision)
                   FROM jsonb_array_elements(p_contacts) c), 0)
END
$$;
