-- TG_ARGV[0]: the layer's geometry column. Only rows that differ are logged; `updated_at`
-- alone is not a change (an import stamps it on every row it updates).
CREATE OR REPLACE FUNCTION log_layer_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    col text := TG_ARGV[0];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO layer_changes (layer, code, attrs_changed) VALUES (TG_TABLE_NAME, '*', true);
    ELSIF TG_OP = 'INSERT' THEN
        EXECUTE format(
            'INSERT INTO layer_changes (layer, code, new_geom, attrs_changed)'
            ' SELECT %L, n.code, n.%I, true FROM new_rows n', TG_TABLE_NAME, col);
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format(
            'INSERT INTO layer_changes (layer, code, old_geom, attrs_changed)'
            ' SELECT %L, o.code, o.%I, true FROM old_rows o', TG_TABLE_NAME, col);
    ELSE
        EXECUTE format(
            'INSERT INTO layer_changes (layer, code, old_geom, new_geom, attrs_changed)'
            ' SELECT %1$L, coalesce(n.code, o.code), o.%2$I, n.%2$I,'
            '        o.code IS NULL OR n.code IS NULL'
            '        OR (to_jsonb(o) - %2$L - ''updated_at'')'
            '           IS DISTINCT FROM (to_jsonb(n) - %2$L - ''updated_at'')'
            ' FROM old_rows o FULL JOIN new_rows n ON n.code = o.code'
            ' WHERE o.code IS NULL OR n.code IS NULL OR o.%2$I IS DISTINCT FROM n.%2$I'
            '    OR (to_jsonb(o) - %2$L - ''updated_at'')'
            '       IS DISTINCT FROM (to_jsonb(n) - %2$L - ''updated_at'')',
            TG_TABLE_NAME, col);
    END IF;
    RETURN NULL;
END;
$$;
