-- The server logs in as its own role (layers/roles.py makes it: a member of jointgrid_app with
-- a password, nothing more). This migration takes away what such a login could still get from
-- PUBLIC: the right to create objects in the schema (PostgreSQL before 15 granted it).
-- Tables made by later migrations reach jointgrid_app through ALTER DEFAULT PRIVILEGES, which
-- every migrate re-asserts for the migrating user (layers.roles.default_grants).
DO $$
BEGIN
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not the owner of schema %; leaving its CREATE grants as they are', current_schema();
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jointgrid_app') THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM jointgrid_app', current_schema());
        EXECUTE format('REVOKE CREATE ON DATABASE %I FROM jointgrid_app', current_database());
    END IF;
END;
$$;
