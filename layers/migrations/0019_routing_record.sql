-- The routing signature is defined once, in gis.routing (``signature``), and written with the
-- rest of the stored routing record (``routing_record``) by the report path and the re-route.
-- The column keeps its values (they were computed by the same rule) and stops being
-- generated; the SQL copy of the rule goes.
ALTER TABLE incidents ALTER COLUMN routing_sig DROP EXPRESSION;
DROP FUNCTION routing_signature(text, text[], jsonb, jsonb);
