-- The facts of the points (p_lon[k], p_lat[k]), one JSON document per point, numbered from 1
-- as the arrays are (`ord`). Distances in metres on the ellipsoid (geography); a point's
-- distance to a polygon it lies outside is measured to the polygon's boundary (the same
-- number, without geography's point-in-polygon test on the sphere).
--
-- Per point, optionally (arrays parallel to p_lon, NULL or shorter for none):
--   p_mechanism  the mechanism of its category: the teams serving it are the candidates;
--   p_extent     its extent: the sides the extent touches are reported;
--   p_sides      sides to report however far they are (a report's parties), joined by U+001F;
--   p_category   its category: the open cases of it nearby are reported as duplicates
--                (within p_dup_radius_m, reported since p_dup_since);
--   p_as_of      the time its teams' positions are read as of (now for a report and /locate;
--                the time a case was decided for the batch re-route). Without it (NULL), a
--                team is placed by its base alone, as before positions.
-- For every point:
--   p_radius_m       the border zone: the sides within it, and the chiefs within it;
--   p_teams_if_cross the teams only where the case can be cross-boundary (the point is on the
--                    line or outside every side, another side is within the radius, it is in a
--                    joint grid, or the point names parties or an extent): a single-side
--                    decision never reads them;
--   p_far            the nearest other side however far it is (its distance is the case's
--                    distance to the border). Without it, a point inside a side reports only the
--                    other sides within the radius (or asked for): what a decision's choices
--                    depend on, so that plain facts repeat exactly from case to case.
--
-- Sides reported: those containing the point, those within the radius, the nearest other one
-- (with p_far, or when no side contains the point), and those asked for. Grids and police
-- grids: those containing the point, and for each side within the radius or asked for, its
-- grid (police grid) containing the point, else its nearest (of the five nearest by the index,
-- measured on the ellipsoid; ties by code).
--
-- Teams: those whose patrol area covers the point, the ten nearest bases, and (with p_as_of)
-- those with a member's fresh fix within p_radius_m of the point; each of them with its
-- `fix` (only when there is one: a document without positions is the one it was before):
-- its nearest member's fix as of p_as_of, {member, device, at (ISO 8601, UTC), lon, lat,
-- distance_m (ellipsoid), age_s}. A device's fix as of t is its latest good (unflagged)
-- fix with a time at or before t among those received by t, fresh when no older than
-- p_fix_max_age_s seconds; a device revoked by t has none. So the same t gives the same
-- fixes later, whatever arrived since (late offline batches included): a re-route reads the
-- positions its decision read.
CREATE OR REPLACE FUNCTION jointgrid_facts(
    p_lon double precision[],
    p_lat double precision[],
    p_radius_m double precision,
    p_mechanism text[] DEFAULT NULL,
    p_extent geometry[] DEFAULT NULL,
    p_sides text[] DEFAULT NULL,
    p_teams_if_cross boolean DEFAULT false,
    p_far boolean DEFAULT true,
    p_category text[] DEFAULT NULL,
    p_dup_radius_m double precision DEFAULT NULL,
    p_dup_since timestamptz DEFAULT NULL,
    p_as_of timestamptz[] DEFAULT NULL,
    p_fix_max_age_s double precision DEFAULT 600
) RETURNS TABLE (ord integer, facts json) LANGUAGE plpgsql STABLE PARALLEL SAFE
-- One cached plan for every call (planning the statement per call cost more than running it
-- for one point; a plan made for a large array's real size was slower, not faster).
SET plan_cache_mode = force_generic_plan
-- No JIT: the plan is large (some 600 expressions), and once the positions table is big its
-- cost passes jit_above_cost, when compiling it took seconds (45 s under load) for a call that
-- runs in milliseconds.
SET jit = off
AS $$
BEGIN
RETURN QUERY SELECT * FROM jointgrid_facts_set(
    p_lon, p_lat, p_radius_m, p_mechanism, p_extent, p_sides, p_teams_if_cross, p_far,
    p_category, p_dup_radius_m, p_dup_since, p_as_of, p_fix_max_age_s);
END;
$$;
