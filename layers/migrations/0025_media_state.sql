-- Photos: the full decode leaves the request. An upload is acknowledged once its structure is
-- whole and its original durable ('pending'); every pixel is then decoded once, when its
-- served copies are made, and the photo becomes 'ready', or 'refused' when it does not decode
-- (the reason kept, an audit event appended, never shown or linked). Photos stored before
-- this had their full decode in the request: they are 'ready'.
ALTER TABLE media
    ADD COLUMN state text NOT NULL DEFAULT 'ready'
        CHECK (state IN ('pending', 'ready', 'refused')),
    ADD COLUMN refusal jsonb;  -- {"code", "reason"} when refused
ALTER TABLE media ALTER COLUMN state SET DEFAULT 'pending';
-- What the finisher still has to do (after a crash, on start): small, since rows leave it.
CREATE INDEX media_pending_idx ON media (added_at) WHERE state = 'pending';
