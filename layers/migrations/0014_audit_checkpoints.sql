-- needs: audit_append_only
-- Signed checkpoints of the audit trail (gis/checkpoint.py, gis/merkle.py): this
-- installation's own (origin 'local') and those imported from another side (origin = that
-- side's code). The signed statement is kept as the exact text that was signed.
--
-- `audit_checkpoint_heads` holds, per checkpoint, the chain heads (case -> seq, hash of its
-- last event) of the cases whose head changed since the signer's previous checkpoint; the
-- heads at checkpoint n are the latest per case among checkpoints 1..n of that signer, and the
-- signed root proves them. Nothing here is trusted by itself: a checkpoint counts only once
-- its signature holds, and its heads only once they give its root.

CREATE TABLE audit_checkpoints (
    id          bigserial PRIMARY KEY,
    origin      text NOT NULL,   -- 'local', or the side whose checkpoint this is
    key_id      text NOT NULL,
    public_key  bytea NOT NULL,  -- ed25519, 32 raw bytes
    seq         integer NOT NULL CHECK (seq >= 1),
    made_at     timestamptz NOT NULL,
    cases       bigint NOT NULL,
    events      bigint NOT NULL,
    root        bytea NOT NULL,
    statement   text NOT NULL,   -- canonical JSON, exactly the signed bytes
    signature   bytea NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (origin, key_id, seq)
);
CREATE INDEX audit_checkpoints_made_idx ON audit_checkpoints (origin, made_at);

CREATE TABLE audit_checkpoint_heads (
    checkpoint_id bigint NOT NULL REFERENCES audit_checkpoints (id),
    incident_id   uuid NOT NULL,
    seq           integer NOT NULL,
    head          bytea NOT NULL,
    PRIMARY KEY (checkpoint_id, incident_id)
);
CREATE INDEX audit_checkpoint_heads_case_idx ON audit_checkpoint_heads (incident_id, checkpoint_id);

-- audit_append_only(): layers/functions/audit_append_only.sql
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_heads_no_update BEFORE UPDATE OR DELETE ON audit_checkpoint_heads
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_heads_no_truncate BEFORE TRUNCATE ON audit_checkpoint_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- The server (as jointgrid_app, or a least-privileged login role) reads the trail and appends
-- checkpoints; it never changes one.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jointgrid_app') THEN
        GRANT SELECT, INSERT ON audit_checkpoints, audit_checkpoint_heads TO jointgrid_app;
        GRANT USAGE, SELECT ON SEQUENCE audit_checkpoints_id_seq TO jointgrid_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_checkpoints, audit_checkpoint_heads FROM jointgrid_app;
    END IF;
END;
$$;
