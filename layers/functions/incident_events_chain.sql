CREATE OR REPLACE FUNCTION incident_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT hash INTO NEW.prev_hash FROM incident_events
    WHERE incident_id = NEW.incident_id ORDER BY seq DESC LIMIT 1;
    NEW.hash := incident_event_digest(NEW.prev_hash, NEW);
    RETURN NEW;
END;
$$;
