-- Least-privilege roles for the execution event store (PostgreSQL).
-- Run as the owner of the schema (the login that ran `eventstore migrate`),
-- in the store's database, after every migration, with the store's schema
-- first in the search path. docs/ROLES.md explains it.
-- The two roles are group roles: grant them to the login users of your
-- services (`GRANT eventstore_app TO orders_service;`). Schema changes
-- (`migrate`, `rebuild`) stay with the owner: neither role gets CREATE on
-- the schema or owns a table.

-- The group roles, created (which needs CREATEROLE) only when missing, so
-- an owner without CREATEROLE can run this file once a DBA created them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventstore_app') THEN
        CREATE ROLE eventstore_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventstore_archivist') THEN
        CREATE ROLE eventstore_archivist NOLOGIN;
    END IF;
    -- The archivist may do everything the application may do.
    IF NOT pg_has_role('eventstore_archivist', 'eventstore_app', 'MEMBER') THEN
        GRANT eventstore_app TO eventstore_archivist;
    END IF;
END
$$;

-- The application: append to and read the log, never change or remove it.
-- The store's schema is the session's: `public`, or the one of
-- EVENTSTORE_POSTGRES_SCHEMA when psql runs with that search path.
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO eventstore_app', current_schema());
END
$$;
GRANT SELECT, INSERT ON execution_events TO eventstore_app;
GRANT USAGE ON SEQUENCE execution_events_position_seq TO eventstore_app;
GRANT SELECT ON eventstore_alembic_version TO eventstore_app;
GRANT SELECT, INSERT ON threads, messages, graphs TO eventstore_app;
-- Read models and liveness leases are rewritable state, not history: the
-- projector upserts rows and moves checkpoints, the reaper deletes leases.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON executions, projection_checkpoints, execution_leases TO eventstore_app;
-- `verify` records what it found (revision 0013), for the console.
GRANT SELECT, INSERT ON verify_runs TO eventstore_app;
GRANT USAGE ON SEQUENCE verify_runs_id_seq TO eventstore_app;
GRANT EXECUTE ON FUNCTION
    eventstore_append(uuid, text, integer, uuid[], text[], integer[], text[], text[], text[])
    TO eventstore_app;
-- The append trigger reads these (revision 0006): the restore epoch, the
-- tombstones of archived streams, and the guard row (visible only to the
-- archive's own transaction). Every store connection checks the epoch.
GRANT SELECT ON execution_events_epochs, archived_streams, execution_events_archive_guard
    TO eventstore_app;
GRANT EXECUTE ON FUNCTION eventstore_check_epoch() TO eventstore_app;
GRANT SELECT ON SEQUENCE execution_events_epoch_seq TO eventstore_app;

-- The archivist, on top: the archive path. The guard row opens the
-- immutability trigger for its own transaction; DELETE on the log also
-- lets the archive lock out appends while it removes streams. The trigger
-- still refuses any DELETE made without the guard row.
GRANT SELECT, INSERT, DELETE ON execution_events_archive_guard TO eventstore_archivist;
GRANT DELETE ON execution_events TO eventstore_archivist;
-- The archive leaves a tombstone for every stream it removes.
GRANT INSERT ON archived_streams TO eventstore_archivist;
