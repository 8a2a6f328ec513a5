-- Fan the statement's new events out to the outbox. One INSERT ... SELECT per statement (not
-- per row), so the re-route's bulk INSERT of 100,000 events costs one join, and nothing at
-- all beyond two index probes when there is no subscription and no channel.
CREATE OR REPLACE FUNCTION outbox_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_subscriptions WHERE enabled) THEN
        INSERT INTO outbox (kind, target, event_type, incident_id, side, event_id)
        SELECT 'webhook', s.id, t.type, e.incident_id, e.side, e.id
        FROM new_events e
        CROSS JOIN LATERAL (SELECT outbox_event_type(e.action) AS type) t
        JOIN incidents i ON i.id = e.incident_id
        JOIN webhook_subscriptions s
          ON s.enabled
         AND (t.type = ANY (s.events) OR '*' = ANY (s.events))
         AND (s.side IS NULL OR s.side = ANY (i.sides))
         AND (s.mechanism IS NULL OR s.mechanism = i.mechanism)
         AND (s.category IS NULL OR s.category = i.category)
        ORDER BY e.incident_id, e.seq, s.id;  -- ids follow the events' order in each stream
    END IF;
    IF EXISTS (SELECT 1 FROM notify_channels WHERE enabled) THEN
        INSERT INTO outbox (kind, target, event_type, incident_id, side, event_id)
        SELECT DISTINCT ON (e.incident_id, e.seq, c.id)
               'notify', c.id, t.type, e.incident_id, e.side, e.id
        FROM new_events e
        CROSS JOIN LATERAL (SELECT outbox_event_type(e.action) AS type) t
        JOIN incidents i ON i.id = e.incident_id
        JOIN notify_rules r ON r.event_type = t.type
        JOIN notify_channels c ON c.enabled AND (
            (r.audience = 'lead_team' AND c.team IS NOT NULL
             AND i.teams @> jsonb_build_array(jsonb_build_object('code', c.team, 'lead', true)))
            OR (r.audience = 'sides' AND c.team IS NULL
                AND (c.side IS NULL OR c.side = ANY (i.sides))
                AND (c.role IS NULL OR EXISTS (
                    SELECT 1 FROM jsonb_array_elements(i.contacts) ct
                    WHERE ct->>'role' = c.role AND (c.side IS NULL OR ct->>'side' = c.side)))))
        ORDER BY e.incident_id, e.seq, c.id;  -- as DISTINCT ON needs
    END IF;
    RETURN NULL;
END;
$$;
