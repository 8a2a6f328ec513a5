-- The cells, derived again first if the border changed since.
CREATE OR REPLACE FUNCTION coverage_cells_ready() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT stale FROM coverage_state) THEN
        PERFORM pg_advisory_xact_lock(7311022);
        IF (SELECT stale FROM coverage_state) THEN
            PERFORM derive_coverage_cells();
        END IF;
    END IF;
END;
$$;
