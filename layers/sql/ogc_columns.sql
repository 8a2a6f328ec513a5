-- The columns of one table: name, type as written in a CAST, base type name, type category
-- ('A' for arrays).
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typname, t.typcategory
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
