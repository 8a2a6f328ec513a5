CREATE OR REPLACE FUNCTION members_from_roster() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO members (id, team, side, name, phone, role, from_roster)
    SELECT member_id(NEW.code, m->>'name'), NEW.code,
           COALESCE(NULLIF(m->>'side', ''), NEW.side), m->>'name',
           COALESCE(m->>'phone', ''), COALESCE(NULLIF(m->>'role', ''), 'member'), true
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(NEW.members::jsonb) = 'array'
                                   THEN NEW.members::jsonb ELSE '[]'::jsonb END) m
    WHERE COALESCE(m->>'name', '') <> ''
    ON CONFLICT (team, name) DO UPDATE
        SET side = EXCLUDED.side, phone = EXCLUDED.phone, role = EXCLUDED.role,
            from_roster = true;
    RETURN NULL;
END;
$$;
