-- needs: incident_events_append_only
-- Cases (incidents) and their append-only audit trail, and the location-facts function shared
-- by single look-ups (/locate, reporting) and the set-based re-route.

CREATE SEQUENCE incident_code_seq;

CREATE TABLE incidents (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                  text NOT NULL UNIQUE,
    side                  text NOT NULL CHECK (side ~ '^[0-9]{6}$'),  -- lead side; distribution column
    sides                 text[] NOT NULL,
    status                text NOT NULL CHECK (status IN ('reported', 'accepted', 'dispatched',
                              'in_progress', 'resolved', 'verified', 'closed', 'rejected', 'duplicate')),
    category              text NOT NULL,
    severity              text NOT NULL,
    description           text NOT NULL DEFAULT '' CHECK (length(description) <= 4000),
    occurred_at           timestamptz NOT NULL,
    reported_at           timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    due_at                timestamptz,
    cross_boundary        boolean NOT NULL,
    reasons               text[] NOT NULL DEFAULT '{}',
    mechanism             text,
    lead_side             text NOT NULL,
    distance_to_border_m  double precision,
    grid_code             text,
    police_grid_code      text,
    teams                 jsonb NOT NULL DEFAULT '[]',
    contacts              jsonb NOT NULL DEFAULT '[]',
    routing               jsonb NOT NULL DEFAULT '{}',
    escalation_level      integer NOT NULL DEFAULT 0,
    verified_sides        text[] NOT NULL DEFAULT '{}',
    merged_into           uuid REFERENCES incidents (id),
    possible_duplicate_of uuid,
    input                 jsonb NOT NULL DEFAULT '{}',  -- the location as sent, with its crs
    reporter              jsonb NOT NULL DEFAULT '{}',  -- private: never in public feeds
    idempotency_key       text,
    request_hash          text,
    geom                  geometry(Point, 4326) NOT NULL,
    extent                geometry(Geometry, 4326),
    CHECK (lead_side = side)
);
CREATE UNIQUE INDEX incidents_idempotency_key_uq ON incidents (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX incidents_geom_gix ON incidents USING gist (geom);
CREATE INDEX incidents_extent_gix ON incidents USING gist (extent);
CREATE INDEX incidents_side_status_idx ON incidents (side, status);
CREATE INDEX incidents_category_time_idx ON incidents (category, reported_at);
CREATE INDEX incidents_due_open_idx ON incidents (due_at)
    WHERE status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved');
CREATE INDEX incidents_updated_idx ON incidents (updated_at, id);
CREATE INDEX incidents_sides_gin ON incidents USING gin (sides);

CREATE TABLE incident_events (
    id          bigserial PRIMARY KEY,
    incident_id uuid NOT NULL REFERENCES incidents (id),
    side        text NOT NULL,  -- the case's lead side; distribution column
    seq         integer NOT NULL,
    action      text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    actor       jsonb NOT NULL DEFAULT '{}',
    actor_side  text,
    note        text,
    payload     jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (incident_id, seq)
);
CREATE INDEX incident_events_incident_idx ON incident_events (incident_id, seq);

-- incident_events_append_only(): layers/functions/incident_events_append_only.sql
CREATE TRIGGER incident_events_no_update BEFORE UPDATE OR DELETE ON incident_events
    FOR EACH ROW EXECUTE FUNCTION incident_events_append_only();
CREATE TRIGGER incident_events_no_truncate BEFORE TRUNCATE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION incident_events_append_only();

-- location_facts(): replaced by jointgrid_facts() (layers/functions/jointgrid_facts.sql, 0018)
