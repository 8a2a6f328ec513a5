-- The public event type of a trail action.
CREATE OR REPLACE FUNCTION outbox_event_type(action text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'incident.' || CASE action
        WHEN 'report' THEN 'reported' WHEN 'accept' THEN 'accepted'
        WHEN 'dispatch' THEN 'dispatched' WHEN 'start' THEN 'started'
        WHEN 'resolve' THEN 'resolved' WHEN 'verify' THEN 'verified'
        WHEN 'close' THEN 'closed' WHEN 'reject' THEN 'rejected'
        WHEN 'return' THEN 'returned' WHEN 'postpone' THEN 'postponed'
        WHEN 'escalate' THEN 'escalated' WHEN 'merge' THEN 'merged'
        WHEN 'overdue' THEN 'overdue' WHEN 'reroute' THEN 'rerouted'
        WHEN 'media' THEN 'photo_added' WHEN 'add_media' THEN 'photo_added'
        WHEN 'photo' THEN 'photo_added'
        ELSE action END
$$;
