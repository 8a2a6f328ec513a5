-- needs: log_layer_changes, routing_reach
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

-- log_layer_changes(): layers/functions/log_layer_changes.sql

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

-- routing_reach(): layers/functions/routing_reach.sql

CREATE INDEX incidents_reach_idx
    ON incidents (routing_reach(contacts, extent, input, distance_to_border_m))
    WHERE status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')
      AND routing_reach(contacts, extent, input, distance_to_border_m) > 0;
