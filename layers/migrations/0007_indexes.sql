-- The self-reference of merged cases needs an index, or every delete or key update on
-- incidents scans the table to check it.
CREATE INDEX IF NOT EXISTS incidents_merged_into_idx ON incidents (merged_into)
    WHERE merged_into IS NOT NULL;
