CREATE OR REPLACE FUNCTION side_parts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.level = 'district' THEN
        DELETE FROM side_parts WHERE side = OLD.code;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.level = 'district' THEN
        DELETE FROM side_parts WHERE side = NEW.code;
        INSERT INTO side_parts (side, geom)
        SELECT NEW.code, (ST_Dump(ST_Subdivide(NEW.geom, 64))).geom;
    END IF;
    RETURN NULL;
END;
$$;
