-- The dashboard's time-limit compliance reads each case's latest `resolve` event
-- (layers/sql/map_stats.sql): a small partial index answers that without reading the whole
-- audit trail.
CREATE INDEX IF NOT EXISTS incident_events_resolve_idx ON incident_events (incident_id, at)
    WHERE action = 'resolve';
