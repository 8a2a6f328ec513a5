-- needs: jointgrid_is_open, routing_reach
-- One facts engine: `jointgrid_facts()` gathers the location facts of a set of points in one
-- statement, for one report as for a million cases. The report path, `/locate` and the batch
-- re-route all call it (one point is an array of one), so that their facts are equal by
-- construction (layers/functions/jointgrid_facts.sql). `location_facts()` goes.
--
-- The open statuses are `gis.workflow.OPEN_STATUSES`; `jointgrid_is_open()` mirrors them for
-- the queries and the partial indexes (a test compares the two). PostgreSQL inlines it, so a
-- query written with it matches an index whose predicate uses it, and one written with the
-- literal list as well.

DROP FUNCTION IF EXISTS location_facts(double precision, double precision, double precision,
    double precision, text, geometry, text, double precision, double precision, timestamptz,
    text[], boolean);

-- The partial indexes over open cases, with the one definition of "open".
DROP INDEX IF EXISTS incidents_open_geom_gix;
CREATE INDEX incidents_open_geom_gix ON incidents USING gist (geom) WHERE jointgrid_is_open(status);
DROP INDEX IF EXISTS incidents_due_open_idx;
CREATE INDEX incidents_due_open_idx ON incidents (due_at) WHERE jointgrid_is_open(status);
DROP INDEX IF EXISTS incidents_reach_idx;
CREATE INDEX incidents_reach_idx
    ON incidents (routing_reach(contacts, extent, input, distance_to_border_m))
    WHERE jointgrid_is_open(status)
      AND routing_reach(contacts, extent, input, distance_to_border_m) > 0;
