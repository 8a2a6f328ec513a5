-- needs: routing_signature
-- The batch re-route compares every open case's stored routing with a new decision. It used
-- to reduce the stored routing to a signature (mechanism, sides, team codes, md5 of the sorted
-- contacts) in its COPY out, per row on one core: 19 s for a million cases. The signature is
-- now stored with the case, computed by PostgreSQL whenever the routing columns are written
-- (a report, a re-route), so the COPY reads one text column. About 20 us per written
-- cross-boundary case; an UPDATE that leaves the routing columns alone (a status change) does
-- not recompute it. Adding the column rewrites the table once.

-- routing_signature(): layers/functions/routing_signature.sql

ALTER TABLE incidents ADD COLUMN routing_sig text
    GENERATED ALWAYS AS (routing_signature(mechanism, sides, teams, contacts)) STORED;
