"""The store in a PostgreSQL schema of its own (EVENTSTORE_POSTGRES_SCHEMA).

An application's database already has a `messages` table in `public`; the
store's migrations, commands, projector, notifications and advisory locks
all stay in (or are named after) the store's schema, and two stores in two
schemas of one database keep apart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

import asyncpg
import pydantic
import pytest

from eventstore import ConfigurationError, EventStore, ExecutionStatus, StoreSettings
from eventstore.backends.postgres_namespace import APPENDS_CHANNEL_SQL, lock_key_sql
from eventstore.testing import project
from projections import ExecutionsView
from tests.cli.runner import run_cli
from tests.helpers import execution_in, make_references

STORE_TABLES: Final = {
    "execution_events",
    "executions",
    "threads",
    "messages",
    "graphs",
    "eventstore_alembic_version",
}
TABLES_SQL: Final = "SELECT tablename FROM pg_tables WHERE schemaname = $1"
ROLES_SQL: Final = Path(__file__).resolve().parents[2] / "docs" / "roles.sql"
# The leader lock of the executions projection's only slot.
SLOT: Final = "executions:0/1"


def _in_schema(schema: str) -> StoreSettings:
    return StoreSettings(postgres_schema=schema)


@pytest.fixture
async def app_database(empty_pg_url: str) -> str:
    """A database whose application has its own `messages` table in public."""
    connection = await asyncpg.connect(empty_pg_url)
    try:
        await connection.execute(
            "CREATE TABLE messages (id integer PRIMARY KEY, body text);"
            "INSERT INTO messages VALUES (1, 'the application''s own')"
        )
    finally:
        await connection.close()
    return empty_pg_url


async def _connect(url: str, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(url, server_settings={"search_path": schema})


@pytest.mark.postgres
async def test_every_table_is_in_the_store_schema(app_database: str) -> None:
    async with EventStore.open(app_database, settings=_in_schema("agents")) as store:
        await store.migrate()
        await store.migrate()  # a second run finds the schema at head
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.COMPLETED)
        assert await project(store) == 3
        assert (
            await ExecutionsView(store).get(run)
        ).status is ExecutionStatus.COMPLETED

    connection = await asyncpg.connect(app_database)
    try:
        ours = {row[0] for row in await connection.fetch(TABLES_SQL, "agents")}
        public = {row[0] for row in await connection.fetch(TABLES_SQL, "public")}
        functions = await connection.fetchval(
            "SELECT count(*) FROM pg_proc WHERE proname = 'eventstore_append' "
            "AND pronamespace = 'agents'::regnamespace"
        )
        app_rows = await connection.fetch("SELECT id, body FROM public.messages")
    finally:
        await connection.close()
    assert ours >= STORE_TABLES
    assert public == {"messages"}  # the application's, untouched
    assert functions == 1
    assert [tuple(row) for row in app_rows] == [(1, "the application's own")]


@pytest.mark.postgres
async def test_two_stores_in_one_database_keep_apart(app_database: str) -> None:
    async with (
        EventStore.open(app_database, settings=_in_schema("team_a")) as store_a,
        EventStore.open(app_database, settings=_in_schema("team_b")) as store_b,
    ):
        await store_a.migrate()
        await store_b.migrate()
        await execution_in(
            store_a, await make_references(store_a), ExecutionStatus.RUNNING
        )
        await execution_in(
            store_b, await make_references(store_b), ExecutionStatus.PENDING
        )
        # Another process leads store A's projection.
        leader_a = await _connect(app_database, "team_a")
        try:
            key = lock_key_sql("projection", "$1")
            assert await leader_a.fetchval(f"SELECT pg_try_advisory_lock({key})", SLOT)
            context_a, context_b = (
                store_a.projection_context,
                store_b.projection_context,
            )
            assert list(await context_a.slot_holders([SLOT])) == [SLOT]
            assert list(await context_b.slot_holders([SLOT])) == []
            # Store B's projector is not held back by A's leader.
            assert await project(store_b) == 1
        finally:
            await leader_a.close()
        assert await ExecutionsView(store_b).count() == 1
        assert await project(store_a) == 2
        assert await ExecutionsView(store_a).count() == 1


@pytest.mark.postgres
async def test_appends_notify_the_store_own_channel(app_database: str) -> None:
    async with EventStore.open(app_database, settings=_in_schema("team_a")) as store:
        await store.migrate()
        refs = await make_references(store)
        listener = await _connect(app_database, "team_a")
        public = await asyncpg.connect(app_database)
        try:
            channel = await listener.fetchval(f"SELECT {APPENDS_CHANNEL_SQL}")
            assert channel != await public.fetchval(f"SELECT {APPENDS_CHANNEL_SQL}")
            notified = asyncio.Event()
            await listener.add_listener(channel, lambda *_: notified.set())
            await execution_in(store, refs, ExecutionStatus.PENDING)
            async with asyncio.timeout(10):
                await notified.wait()
        finally:
            await listener.close()
            await public.close()


@pytest.mark.postgres
async def test_roles_sql_grants_on_the_store_schema(app_database: str) -> None:
    async with EventStore.open(app_database, settings=_in_schema("agents")) as store:
        await store.migrate()
    owner = await _connect(app_database, "agents")
    try:
        await owner.execute(ROLES_SQL.read_text())
        usage = await owner.fetchval(
            "SELECT has_schema_privilege('eventstore_app', 'agents', 'USAGE')"
        )
        insert = await owner.fetchval(
            "SELECT has_table_privilege('eventstore_app', "
            "'agents.execution_events', 'INSERT')"
        )
    finally:
        await owner.close()
    assert usage is True
    assert insert is True


@pytest.mark.parametrize(
    "name", ["Agents", "1agents", "pg_agents", "a-b", "a" * 64, "agents; drop"]
)
def test_a_schema_name_that_needs_quoting_is_refused(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(pydantic.ValidationError, match="schema name"):
        StoreSettings(postgres_schema=name)
    monkeypatch.setenv("EVENTSTORE_POSTGRES_SCHEMA", name)
    with pytest.raises(
        ConfigurationError, match="EVENTSTORE_POSTGRES_SCHEMA is invalid"
    ):
        StoreSettings.from_environment()


@pytest.mark.postgres
async def test_a_url_search_path_and_the_setting_together_are_refused(
    app_database: str,
) -> None:
    url = app_database + "?options=-csearch_path%3Dother"
    with pytest.raises(ConfigurationError, match="choose one"):
        async with EventStore.open(url, settings=_in_schema("agents")):
            pass
    connection = await asyncpg.connect(app_database)
    try:
        schemas = await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('agents', 'other')"
        )
    finally:
        await connection.close()
    assert schemas == 0  # nothing was created


@pytest.mark.sqlite
async def test_sqlite_ignores_the_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    async with EventStore.open(url, settings=_in_schema("agents")) as store:
        await store.migrate()
        refs = await make_references(store)
        await execution_in(store, refs, ExecutionStatus.PENDING)
        assert await project(store) == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [("EVENTSTORE_POSTGRES_SCHEMA", "Agents"), ("EVENTSTORE_POOL_SIZE", "0")],
)
def test_a_bad_setting_in_the_environment_is_one_line_and_exit_2(
    variable: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    done = run_cli("stats", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[0]]
    assert f"{variable} is invalid" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no database file was made


@pytest.mark.postgres
async def test_every_new_connection_of_a_store_in_a_schema_works(
    app_database: str,
) -> None:
    """Each new pool connection checks the restore epoch (0006) in the store's schema.

    The check function searched `public`, so a store in a schema of its own
    failed on every connection its pool opened after the migration (0014).
    """
    async with EventStore.open(app_database, settings=_in_schema("agents")) as store:
        await store.migrate()
    settings = StoreSettings(postgres_schema="agents", pool_size=4)
    async with EventStore.open(app_database, settings=settings) as store:
        refs = await make_references(store)
        runs = await asyncio.gather(
            *(execution_in(store, refs, ExecutionStatus.COMPLETED) for _ in range(4))
        )
        assert len(set(runs)) == 4
        assert (await store.audit.verify_log()).ok
