"""docs/roles.sql: the application role cannot alter the log; only the archivist archives."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from eventstore import EventStore, EventStoreError, ExecutionStatus, IntegrityError
from eventstore.archiving import archive_finished_before
from eventstore.reaper import reap
from tests.helpers import (
    count_events,
    execution_in,
    make_references,
    project_everything,
    raw_pg,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.postgres

ROLES_SQL = Path(__file__).parents[2] / "docs" / "roles.sql"


@pytest.fixture
async def logins(pg_url: str) -> AsyncIterator[dict[str, str]]:
    """The store's URL as a login of each role (docs/roles.sql applied)."""
    suffix = uuid.uuid4().hex[:8]
    users = {"app": f"app_{suffix}", "archivist": f"archivist_{suffix}"}
    admin = await raw_pg(pg_url)
    try:
        await admin.execute(ROLES_SQL.read_text())
        await admin.execute(f"CREATE ROLE {users['app']} LOGIN IN ROLE eventstore_app")
        await admin.execute(
            f"CREATE ROLE {users['archivist']} LOGIN IN ROLE eventstore_archivist"
        )
        yield {
            role: make_url(pg_url)
            .set(username=user)
            .render_as_string(hide_password=False)
            for role, user in users.items()
        }
    finally:
        for user in users.values():
            await admin.execute(f"DROP OWNED BY {user}")
            await admin.execute(f"DROP ROLE {user}")
        await admin.close()


async def test_the_application_role_runs_the_service_but_cannot_alter_the_log(
    logins: dict[str, str], tmp_path: Path
) -> None:
    async with EventStore.open(logins["app"]) as store:
        refs = await make_references(store)
        running = await execution_in(store, refs, ExecutionStatus.RUNNING)
        await store.executions.heartbeat(running, worker_id="w")
        done = await execution_in(store, refs, ExecutionStatus.COMPLETED)
        await project_everything(store)
        await reap(store, pending_after=timedelta(hours=1))
        before = await count_events(store)
        with pytest.raises(EventStoreError, match="permission denied"):
            await archive_finished_before(
                store, datetime.now(UTC) + timedelta(minutes=1), tmp_path
            )
        assert await count_events(store) == before
        assert list(tmp_path.iterdir()) == []
        assert (await store.executions.get(done)).status is ExecutionStatus.COMPLETED

    connection = await raw_pg(logins["app"])
    try:
        for statement in (
            "UPDATE execution_events SET type = 'Forged'",
            "DELETE FROM execution_events",
            "TRUNCATE execution_events",
            "INSERT INTO execution_events_archive_guard VALUES (1, 'sneak')",
            "ALTER TABLE execution_events DISABLE TRIGGER USER",
        ):
            with pytest.raises(asyncpg.PostgresError) as caught:
                await connection.execute(statement)
            assert caught.value.sqlstate in {"42501"}, (
                statement
            )  # insufficient privilege
    finally:
        await connection.close()


async def test_only_the_archivist_archives_and_only_through_the_archive_path(
    logins: dict[str, str], tmp_path: Path
) -> None:
    async with EventStore.open(logins["archivist"]) as store:
        refs = await make_references(store)
        done = await execution_in(store, refs, ExecutionStatus.COMPLETED)
        await project_everything(store)
        with pytest.raises(IntegrityError, match="append-only"):
            async with store.backend.begin_write() as connection:
                await connection.exec_driver_sql("DELETE FROM execution_events")
        result = await archive_finished_before(
            store, datetime.now(UTC) + timedelta(minutes=1), tmp_path
        )
        assert result is not None
        assert [s.stream_id for s in result.manifest.streams] == [done]
        assert [e async for e in store.read_stream(done)] == []
