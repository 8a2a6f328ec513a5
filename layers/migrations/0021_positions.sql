-- needs: member_id, members_from_roster, positions_maintain
-- Members and devices as records, and the positions they post.
--
-- A team's members were names inside its record (`teams.members`, JSON). They become rows of
-- `members`, kept in step with the roster by a trigger, so a member named in a team's record
-- exists as a record at once, and `jointgrid device add` can create others. A device is bound
-- to one member; its key is stored as a SHA-256 hash only, and it can do one thing: post
-- positions (the key is not an API key: it opens nothing else).
--
-- `positions` is partitioned by range of the fix's own time, one partition a day, made and
-- dropped by `positions_maintain()` (our own ~40 lines instead of pg_partman: no extension to
-- install on every machine and managed database, no background worker). It makes partitions
-- two days ahead; `jointgrid positions-maintain` runs it (daily, from cron), and the intake
-- runs it itself whenever a fix finds no partition for its day. Old fixes leave by dropping a
-- whole partition, never by a DELETE. Every row carries the device's side (the distribution column,
-- docs/scaling.md), and the primary key (device, time) makes a retried fix land once.

CREATE TABLE members (
    id          text PRIMARY KEY,
    team        text NOT NULL REFERENCES teams (code) ON DELETE CASCADE,
    side        text NOT NULL CHECK (side ~ '^[0-9]{6}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    phone       text NOT NULL DEFAULT '',
    role        text NOT NULL DEFAULT 'member',
    from_roster boolean NOT NULL DEFAULT false,  -- named in the team's record
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team, name)
);
CREATE INDEX members_side_idx ON members (side);


CREATE TRIGGER teams_members_sync AFTER INSERT OR UPDATE OF members ON teams
    FOR EACH ROW EXECUTE FUNCTION members_from_roster();
UPDATE teams SET members = members;  -- the teams already loaded

CREATE TABLE devices (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    member_id   text NOT NULL REFERENCES members (id),
    team        text NOT NULL REFERENCES teams (code),
    side        text NOT NULL CHECK (side ~ '^[0-9]{6}$'),
    secret_hash bytea NOT NULL,
    crs         text NOT NULL DEFAULT 'wgs84' CHECK (crs IN ('wgs84', 'cgcs2000', 'gcj02', 'bd09')),
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX devices_member_idx ON devices (member_id);
CREATE INDEX devices_team_idx ON devices (team);

CREATE TABLE positions (
    device      text NOT NULL,
    time        timestamptz NOT NULL,           -- the fix's own time (device clock)
    side        text NOT NULL,                  -- the device's side: the distribution column
    team        text NOT NULL,
    member_id   text NOT NULL,
    geom        geometry(Point, 4326) NOT NULL, -- WGS84, whatever the device sent
    accuracy_m  real,                           -- NULL: unknown (Traccar Client sends 0)
    speed_mps   real,
    bearing     real,
    altitude_m  real,
    battery     real,
    flags       text[] NOT NULL DEFAULT '{}',   -- 'speed', 'accuracy': stored, left out of tracks and coverage
    source      text NOT NULL CHECK (source IN ('osmand', 'owntracks', 'batch')),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device, time)
) PARTITION BY RANGE (time);
CREATE INDEX positions_geom_gix ON positions USING gist (geom);
CREATE INDEX positions_time_idx ON positions (time);

-- The latest good (unflagged) fix of each device and of each team: read in constant time by
-- the map, the feeds and routing; upserted in the transaction that stores the fix.
CREATE TABLE device_latest (
    device        text PRIMARY KEY,
    side          text NOT NULL,
    team          text NOT NULL,
    member_id     text NOT NULL,
    time          timestamptz NOT NULL,
    geom          geometry(Point, 4326) NOT NULL,
    accuracy_m    real,
    speed_mps     real,
    seen_at       timestamptz NOT NULL,  -- the last fix of any kind, flagged ones too
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_latest_team_idx ON device_latest (team);
CREATE INDEX device_latest_geom_gix ON device_latest USING gist (geom);

-- Team level only: no device and no member here, so no feed of it can name one.
CREATE TABLE team_latest (
    team       text PRIMARY KEY REFERENCES teams (code) ON DELETE CASCADE,
    side       text NOT NULL,
    time       timestamptz NOT NULL,
    geom       geometry(Point, 4326) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX team_latest_geom_gix ON team_latest USING gist (geom);

-- Fixes that /osmand and /owntracks answered 200 but did not store (the apps resend a refused
-- fix for ever), counted per device, day and reason.
CREATE TABLE positions_dropped (
    device text NOT NULL,
    side   text NOT NULL,
    day    date NOT NULL,
    reason text NOT NULL,
    n      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (device, day, reason)
);

REVOKE ALL ON FUNCTION positions_maintain(integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION positions_maintain(integer, integer, integer) TO jointgrid_app;

SELECT positions_maintain(90, 3, 2);
