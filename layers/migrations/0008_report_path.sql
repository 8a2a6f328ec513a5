-- Report path, cheaper.
--
-- 1. location_facts() v3: a new last parameter `p_teams_if_cross`. With it (the report path),
--    the teams are looked up only where the case can be cross-boundary: the point is on the
--    line or outside every side, another side is within the radius (the border zone), it is
--    in a joint grid, or the report names parties or an extent. A single-side case never
--    reads its teams, and the team look-up (the nearest ten of the mechanism, among every
--    team of the province, with their rosters) was about a third of the function's time.
--    Without it (locate, re-route) the answer is as before.
-- 2. The duplicate search walks the open cases' GiST index near the point instead of also
--    reading every recent case of the category through the (category, reported_at) index;
--    of open cases at the same distance it names the first reported (the order of such ties
--    was left to the plan).
-- 3. `incident_events_incident_idx` repeats the index of the UNIQUE (incident_id, seq)
--    constraint: every appended event paid a second btree insert for nothing.

DROP FUNCTION IF EXISTS location_facts(double precision, double precision, double precision,
    double precision, text, geometry, text, double precision, double precision, timestamptz,
    text[]);

-- location_facts(): replaced by jointgrid_facts() (layers/functions/jointgrid_facts.sql, 0018)

DROP INDEX IF EXISTS incident_events_incident_idx;
