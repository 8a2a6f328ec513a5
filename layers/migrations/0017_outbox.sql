-- needs: outbox_event_type, outbox_fan_out
-- Push: webhook subscriptions, notification channels, and the outbox that the delivery worker
-- drains. Every event appended to incident_events fans out to the matching subscriptions and
-- channels in the same statement (a statement-level trigger over the new rows), so a committed
-- event is never without its deliveries and a rolled-back one never has any: by construction,
-- for the single report, a transition and the bulk re-route alike.

CREATE TABLE webhook_subscriptions (
    id               text PRIMARY KEY,  -- wh_...
    url              text NOT NULL CHECK (url ~ '^https?://'),
    events           text[] NOT NULL CHECK (cardinality(events) > 0),  -- incident.reported, ..., or *
    side             text CHECK (side ~ '^[0-9]{6}$'),
    mechanism        text,
    category         text,
    role             text NOT NULL DEFAULT 'feed'
                     CHECK (role IN ('feed', 'operator', 'admin')),  -- whose redaction the payload follows
    full_payload     boolean NOT NULL DEFAULT false,
    allow_private    boolean NOT NULL DEFAULT false,  -- admits loopback and private addresses
    secret           text NOT NULL CHECK (secret ~ '^whsec_'),
    old_secret       text,  -- still signed with until old_secret_until (rotation grace)
    old_secret_until timestamptz,
    name             text NOT NULL DEFAULT '',
    enabled          boolean NOT NULL DEFAULT true,
    disabled_reason  text,
    disabled_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Channels to people, reached through apprise (WeCom / DingTalk bots, email, a generic JSON
-- webhook). A channel belongs to a team (its group chat) or to a side and/or a contact role
-- (grid_chief, police_officer, river, ...; a side with no role is its command centre).
CREATE TABLE notify_channels (
    id         text PRIMARY KEY,  -- nc_...
    team       text,
    side       text CHECK (side ~ '^[0-9]{6}$'),
    role       text,
    url        text NOT NULL,  -- an apprise URL; it may carry a bot key, so lists mask it
    name       text NOT NULL DEFAULT '',
    enabled    boolean NOT NULL DEFAULT true,
    last_sent_at timestamptz,  -- the worker spaces a channel's messages (bots are rate-limited)
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (team IS NOT NULL OR side IS NOT NULL OR role IS NOT NULL),
    CHECK (team IS NULL OR (side IS NULL AND role IS NULL))
);
CREATE INDEX notify_channels_team_idx ON notify_channels (team) WHERE team IS NOT NULL;

-- Who is told of which event (boundary_data/mechanisms.yaml `notifications`, written by seed):
-- audience `lead_team` (the lead team's channels) or `sides` (the channels of each involved
-- side and of its contacts' roles).
CREATE TABLE notify_rules (
    event_type text NOT NULL,
    audience   text NOT NULL CHECK (audience IN ('lead_team', 'sides')),
    PRIMARY KEY (event_type, audience)
);

CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,  -- its order is the delivery order within a stream
    kind            text NOT NULL CHECK (kind IN ('webhook', 'notify')),
    target          text NOT NULL,  -- the subscription or channel id
    event_type      text NOT NULL,
    incident_id     uuid,  -- NULL for events about no single case (audit checkpoints)
    side            text,  -- the case's side: distribution column
    event_id        bigint,  -- incident_events.id, when the event is in the trail
    data            jsonb,  -- the event itself, when it is not in the trail
    -- one stream per (target, case): delivered in id order, one at a time
    stream          uuid NOT NULL GENERATED ALWAYS AS
                        (coalesce(incident_id, '00000000-0000-0000-0000-000000000000')) STORED,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_at         timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_status     integer,
    body            text,  -- frozen at the first attempt, so every retry sends the same bytes
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    delivered_at    timestamptz
);
-- The worker's two probes: what is due, and whether an earlier row of the same stream is
-- open; the second index also lists a case's deliveries (the case page). Every index costs
-- each of the re-route's bulk rows, so there are only these two and the key; the dead-row
-- index stays empty until something dies.
CREATE INDEX outbox_due_idx ON outbox (next_at) WHERE status IN ('pending', 'failed');
CREATE INDEX outbox_stream_idx ON outbox (stream, target, id);
CREATE INDEX outbox_dead_idx ON outbox (created_at) WHERE status = 'dead';

-- outbox_event_type(): layers/functions/outbox_event_type.sql

-- outbox_fan_out(): layers/functions/outbox_fan_out.sql
CREATE TRIGGER incident_events_outbox AFTER INSERT ON incident_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_fan_out();

-- The overdue pass emits `overdue` once per case and due time.
CREATE UNIQUE INDEX incident_events_overdue_once ON incident_events (incident_id, (payload->>'due_at'))
    WHERE action = 'overdue';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jointgrid_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_subscriptions, notify_channels,
            notify_rules, outbox TO jointgrid_app;
        GRANT USAGE, SELECT ON SEQUENCE outbox_id_seq TO jointgrid_app;
    END IF;
END;
$$;
