-- The open statuses, as gis.workflow.OPEN_STATUSES defines them (a test compares the two):
-- for the queries and the partial indexes over open cases. PostgreSQL inlines it.
CREATE OR REPLACE FUNCTION jointgrid_is_open(p_status text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved');
