CREATE OR REPLACE FUNCTION incident_event_digest(prev bytea, e incident_events) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(coalesce(prev, '\x'::bytea) || convert_to(concat_ws('|',
        e.incident_id::text, e.seq::text, e.side, e.action, coalesce(e.from_status, ''), e.to_status,
        e.actor::jsonb::text, coalesce(e.actor_side, ''), coalesce(e.note, ''), e.payload::jsonb::text,
        to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')), 'UTF8'))
$$;
