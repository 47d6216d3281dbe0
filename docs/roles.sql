-- Least-privilege roles for the execution event store (PostgreSQL).
-- Run as the owner of the schema (the role that ran `eventstore migrate`),
-- in the store's database, after every migration. docs/ROLES.md explains it.
-- The two roles are group roles: grant them to the login users of your
-- services (`GRANT eventstore_app TO orders_service;`).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventstore_app') THEN
        CREATE ROLE eventstore_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventstore_archivist') THEN
        CREATE ROLE eventstore_archivist NOLOGIN;
    END IF;
END
$$;

-- The application: append to and read the log, never change or remove it.
GRANT USAGE ON SCHEMA public TO eventstore_app;
GRANT SELECT, INSERT ON execution_events TO eventstore_app;
GRANT USAGE ON SEQUENCE execution_events_position_seq TO eventstore_app;
GRANT SELECT ON alembic_version TO eventstore_app;
GRANT SELECT, INSERT ON threads, messages, graphs TO eventstore_app;
-- Read models and liveness leases are rewritable state, not history.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON executions, projection_checkpoints, execution_leases TO eventstore_app;
GRANT EXECUTE ON FUNCTION
    eventstore_append(uuid, text, integer, uuid[], text[], integer[], text[], text[], text[])
    TO eventstore_app;

-- The archivist: everything the application may do, plus the archive path:
-- the guard row that opens the immutability trigger, and DELETE on the log.
-- The trigger still refuses any DELETE made without the guard row.
GRANT eventstore_app TO eventstore_archivist;
GRANT SELECT, INSERT, DELETE ON execution_events_archive_guard TO eventstore_archivist;
GRANT DELETE ON execution_events TO eventstore_archivist;
