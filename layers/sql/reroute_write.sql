-- Write the re-routed cases staged in _reroute: one UPDATE ... FROM, and one INSERT of their
-- audit events (the hash-chain trigger still runs per row). A case whose status moved since
-- it was read is left alone. `side` (the intake side, the distribution column) never
-- changes; the lead side may. Parameters: actor, note, at.
WITH u AS (
    UPDATE incidents i
    SET lead_side = r.side, sides = r.sides, cross_boundary = r.cross_boundary,
        reasons = r.reasons, mechanism = r.mechanism,
        distance_to_border_m = r.distance_to_border_m, grid_code = r.grid_code,
        police_grid_code = r.police_grid_code, teams = r.teams, contacts = r.contacts,
        routing = r.routing, routing_sig = r.routing_sig, updated_at = now()
    FROM _reroute r
    WHERE i.id = r.id AND i.status = r.status
    RETURNING i.id, i.side, i.status
)
INSERT INTO incident_events (incident_id, side, seq, action, from_status, to_status, actor,
                             actor_side, note, payload, at)
SELECT u.id, u.side,
       coalesce((SELECT max(e.seq) FROM incident_events e WHERE e.incident_id = u.id), 0) + 1,
       'reroute', u.status, u.status, %(actor)s, NULL, %(note)s,
       jsonb_build_object('changed', r.diff), %(at)s
FROM u JOIN _reroute r ON r.id = u.id
