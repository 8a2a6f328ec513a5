-- The rows of one page: those between the first and last keys its fingerprint found (in the
-- same snapshot, so exactly the rows it counted), one feature (GeoJSON text built by PostGIS)
-- per row. No ORDER BY: the keys already bound the page, and without it PostgreSQL may read
-- the page's heap blocks in physical order (a bitmap scan) instead of one tuple at a time
-- through the index, which costs more than twice the CPU. Features within a page therefore
-- come in storage order; pages come in key order.
SELECT {select}
FROM {source}
WHERE {where}
