-- needs: incident_event_digest, incident_events_chain
-- Access: API keys (stored only as hashes), page sessions, a hash chain over each case's
-- events, and an application role that may only append to the audit trail.

CREATE TABLE api_keys (
    id           text PRIMARY KEY,  -- the public part of the key
    secret_hash  bytea NOT NULL,    -- sha256 of the secret part; the secret itself is never stored
    role         text NOT NULL CHECK (role IN ('grid_worker', 'team_member', 'operator', 'admin', 'feed')),
    side         text CHECK (side ~ '^[0-9]{6}$'),
    team         text REFERENCES teams (code),
    name         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK (role IN ('admin', 'feed') OR side IS NOT NULL),
    CHECK (role <> 'team_member' OR team IS NOT NULL)
);

CREATE TABLE sessions (
    id_hash    bytea PRIMARY KEY,  -- sha256 of the cookie value
    key_id     text NOT NULL REFERENCES api_keys (id),
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_key_idx ON sessions (key_id);

-- The hash chain: each event's hash covers the previous event's hash and its own content.
-- Every append happens under a row lock on its case, so a case's chain never forks.
ALTER TABLE incident_events ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;

-- incident_event_digest(): layers/functions/incident_event_digest.sql

-- incident_events_chain(): layers/functions/incident_events_chain.sql
CREATE TRIGGER incident_events_chain BEFORE INSERT ON incident_events
    FOR EACH ROW EXECUTE FUNCTION incident_events_chain();

-- Chain the events that existed before this migration.
ALTER TABLE incident_events DISABLE TRIGGER incident_events_no_update;
DO $$
DECLARE
    r incident_events;
    prev bytea;
    last uuid;
BEGIN
    FOR r IN SELECT * FROM incident_events ORDER BY incident_id, seq LOOP
        IF last IS DISTINCT FROM r.incident_id THEN prev := NULL; last := r.incident_id; END IF;
        UPDATE incident_events SET prev_hash = prev, hash = incident_event_digest(prev, r) WHERE id = r.id;
        prev := incident_event_digest(prev, r);
    END LOOP;
END;
$$;
ALTER TABLE incident_events ENABLE TRIGGER incident_events_no_update;

-- The role the server works as: everything it needs, but only SELECT and INSERT on the audit
-- trail. Creating roles needs CREATEROLE; on a server where we may not, the trigger above still
-- guards the trail and the server keeps working as the connecting user.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jointgrid_app') THEN
        CREATE ROLE jointgrid_app NOLOGIN;
    END IF;
    EXECUTE format('GRANT jointgrid_app TO %I', current_user);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot create the role jointgrid_app here; the server will run as %', current_user;
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jointgrid_app') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO jointgrid_app', current_schema());
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO jointgrid_app;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO jointgrid_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON incident_events FROM jointgrid_app;
        REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM jointgrid_app;
    END IF;
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jointgrid_app') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA public
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO jointgrid_app;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO jointgrid_app;
    END IF;
END;
$$;
