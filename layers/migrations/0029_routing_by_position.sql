-- Routing by where a team is now: the facts engine reads each candidate team's nearest
-- member's fresh fix as of a time per point (now for a report and /locate; the time a case
-- was decided for the batch re-route), so `jointgrid_facts()` and `jointgrid_facts_set()`
-- take two more arguments (p_as_of, p_fix_max_age_s): the old signatures go, the function
-- files create the new ones.
--
-- A device's latest fix (`device_latest`) is its fix as of a time when nothing was stored for
-- it since and its time is not after it: the constant-time case of a report. Otherwise the
-- engine reads the latest good fix at or before the time, received by then, through the
-- primary key (device, time) of `positions`. This index finds, for a time, whether any
-- device's latest fix is newer than it (then the stored fixes near a point are searched too).

DROP FUNCTION IF EXISTS jointgrid_facts(double precision[], double precision[], double precision,
    text[], geometry[], text[], boolean, boolean, text[], double precision, timestamptz);
DROP FUNCTION IF EXISTS jointgrid_facts_set(double precision[], double precision[],
    double precision, text[], geometry[], text[], boolean, boolean, text[], double precision,
    timestamptz);

CREATE INDEX device_latest_changed_idx ON device_latest (greatest(updated_at, time));
