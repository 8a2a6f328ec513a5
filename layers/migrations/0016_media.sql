-- Evidence: photos on cases. The originals live in a content-addressed store (files named by
-- their SHA-256, see layers/blobstore.py); this table says which case each belongs to, who
-- added it and when, what the photo itself says about where and when it was taken, and the
-- capability token through which public feeds link its stripped screen copy.

CREATE TABLE media (
    id                    bigserial PRIMARY KEY,
    incident_id           uuid NOT NULL REFERENCES incidents (id),
    side                  text NOT NULL,  -- the case's lead side; distribution column
    sha256                text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    kind                  text NOT NULL CHECK (kind IN ('report', 'resolution')),
    added_by              jsonb NOT NULL DEFAULT '{}',  -- the actor, as the audit trail records it
    added_at              timestamptz NOT NULL DEFAULT now(),
    content_type          text NOT NULL
                              CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp', 'image/heic')),
    bytes                 bigint NOT NULL CHECK (bytes > 0),
    width                 integer NOT NULL CHECK (width > 0),
    height                integer NOT NULL CHECK (height > 0),
    gps                   geometry(Point, 4326),  -- from the photo's own EXIF, if any (private)
    taken_at              timestamptz,            -- EXIF DateTimeOriginal, zone per OffsetTime or +08:00
    distance_m            double precision,       -- photo position to the case's point, geography
    seconds_before_report double precision,       -- case reported_at minus taken_at
    public_token          text NOT NULL UNIQUE,   -- capability for the public screen copy
    UNIQUE (incident_id, sha256)                  -- a photo is on a case once
);
CREATE INDEX media_incident_idx ON media (incident_id, added_at, id);
CREATE INDEX media_sha256_idx ON media (sha256);
