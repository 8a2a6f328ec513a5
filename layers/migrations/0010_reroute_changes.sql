-- What changed since the last re-route, so that `jointgrid reroute` re-decides only the cases a
-- change can reach instead of every open case.
--
-- 1. `layer_changes`: every insert, update, delete or truncate of the layers that location
--    facts are drawn from (areas, grids, police grids, chiefs, teams), one row per feature
--    with its geometry before and after, logged by statement triggers over the transition
--    tables. A re-route that writes consumes (deletes) the rows it read, in the same
--    transaction as its writes; rows committed meanwhile stay for the next run.
-- 2. `reroute_runs`: one row per re-route that wrote, with the digest of the catalogue it
--    decided with. Without a run, or with another catalogue, the next re-route is a full pass.
-- 3. `routing_reach()`: how far from a case the features that decided its stored routing may
--    lie. Routing looks at most the border zone (plus the service-area tolerance) away, except
--    for a contact found farther (a grid or police grid of a side with a gap in its coverage)
--    and for cases whose routing looks at any distance: an extent, parties, or a point on the
--    line itself (every other side reported is then involved). A partial index keeps the few
--    cases with a reach beyond 0 m at hand; the re-route always re-decides those whose reach
--    exceeds the zone.

CREATE TABLE layer_changes (
    id            bigserial PRIMARY KEY,
    layer         text NOT NULL,
    code          text NOT NULL,  -- '*' for a TRUNCATE
    old_geom      geometry(Geometry, 4326),
    new_geom      geometry(Geometry, 4326),
    attrs_changed boolean NOT NULL,  -- more than the geometry changed (or added, removed)
    at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reroute_runs (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    mode      text NOT NULL CHECK (mode IN ('full', 'incremental')),
    catalogue text NOT NULL,
    examined  bigint NOT NULL,
    changed   bigint NOT NULL
);

-- TG_ARGV[0]: the layer's geometry column. Only rows that differ are logged; `updated_at`
-- alone is not a change (an import stamps it on every row it updates).
CREATE FUNCTION log_layer_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    col text := TG_ARGV[0];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO layer_changes (layer, code, attrs_changed) VALUES (TG_TABLE_NAME, '*', true);
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE format(
            'INSERT INTO layer_changes (layer, code, new_geom, attrs_changed)'
            ' SELECT %L, n.code, n.%I, true FROM new_rows n', TG_TABLE_NAME, col);
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format(
            'INSERT INTO layer_changes (layer, code, old_geom, attrs_changed)'
            ' SELECT %L, o.code, o.%I, true FROM old_rows o', TG_TABLE_NAME, col);
    ELSE
        EXECUTE format(
            'INSERT INTO layer_changes (layer, code, old_geom, new_geom, attrs_changed)'
            ' SELECT %1$L, coalesce(n.code, o.code), o.%2$I, n.%2$I,'
            '        o.code IS NULL OR n.code IS NULL'
            '        OR (to_jsonb(o) - %2$L - ''updated_at'')'
            '           IS DISTINCT FROM (to_jsonb(n) - %2$L - ''updated_at'')'
            ' FROM old_rows o FULL JOIN new_rows n ON n.code = o.code'
            ' WHERE o.code IS NULL OR n.code IS NULL OR o.%2$I IS DISTINCT FROM n.%2$I'
            '    OR (to_jsonb(o) - %2$L - ''updated_at'')'
            '       IS DISTINCT FROM (to_jsonb(n) - %2$L - ''updated_at'')',
            TG_TABLE_NAME, col);
    END IF;
    RETURN NULL;
END;
$$;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('areas', 'geom'), ('grids', 'geom'),
                                   ('police_grids', 'geom'), ('chiefs', 'geom'),
                                   ('teams', 'patrol_area')) v(tab, col)
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION log_layer_changes(%L)',
                       t.tab || '_log_insert', t.tab, t.col);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I'
                       ' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION log_layer_changes(%L)',
                       t.tab || '_log_update', t.tab, t.col);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION log_layer_changes(%L)',
                       t.tab || '_log_delete', t.tab, t.col);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION log_layer_changes(%L)',
                       t.tab || '_log_truncate', t.tab, t.col);
    END LOOP;
END;
$$;

-- Metres: how far from the case the features deciding its stored routing may lie, beyond the
-- border zone; 'Infinity' where routing looks at any distance.
CREATE FUNCTION routing_reach(p_contacts jsonb, p_extent geometry, p_input jsonb,
                              p_distance_to_border_m double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE
    WHEN p_extent IS NOT NULL OR p_input ? 'parties_sides' OR p_distance_to_border_m = 0
        THEN 'Infinity'::double precision
    ELSE coalesce((SELECT max((c ->> 'distance_m')::double precision)
                   FROM jsonb_array_elements(p_contacts) c), 0)
END
$$;

CREATE INDEX incidents_reach_idx
    ON incidents (routing_reach(contacts, extent, input, distance_to_border_m))
    WHERE status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')
      AND routing_reach(contacts, extent, input, distance_to_border_m) > 0;
