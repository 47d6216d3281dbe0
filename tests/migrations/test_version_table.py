"""Our revisions beside a service's own alembic history, in one database (docs/MIGRATIONS.md).

The service's history here is a real alembic tree written to a temporary
directory, with the async env.py a service would have and our
`include_object` hook, run by alembic's own command API.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from eventstore import (
    EventStore,
    SchemaNotMigrated,
    include_object,
    migrations_location,
)
from eventstore.migrating import SCHEMA_HEAD, run_migration
from eventstore.revisions import LEGACY_VERSION_TABLE, VERSION_TABLE
from tests.helpers import count_events, make_references
from tests.test_docs_code import code_blocks

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SERVICE_REVISION = "a1b2c3d4e5f6"
SERVICE_METADATA = sa.MetaData()
sa.Table("orders", SERVICE_METADATA, sa.Column("id", sa.Integer, primary_key=True))


SERVICE_REVISION_FILE = f'''
import sqlalchemy as sa
from alembic import op

revision = "{SERVICE_REVISION}"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("orders")
'''


def service_history(
    tmp_path: Path, url: str, revision_file: str = SERVICE_REVISION_FILE
) -> Config:
    """A service's alembic tree of one revision, on the same database."""
    root = tmp_path / "service_migrations"
    (root / "versions").mkdir(parents=True)
    # The env.py docs/MIGRATIONS.md shows, as it is written there.
    (env,) = code_blocks("alembic-env")
    (root / "env.py").write_text(env.code)
    (root / "versions" / "service_revision.py").write_text(revision_file)
    config = Config()
    config.set_main_option("script_location", str(root))
    config.set_main_option(
        "sqlalchemy.url",
        url.replace("sqlite://", "sqlite+aiosqlite://", 1).replace(
            "postgresql://", "postgresql+asyncpg://", 1
        ),
    )
    return config


async def run_service(
    run: Callable[[Config, str], None], config: Config, revision: str
) -> None:
    """Run a command of the service's history, as its own process would: no loop running."""
    await asyncio.to_thread(run, config, revision)


async def _scalar(store: EventStore, sql: str) -> object:
    async with store.backend.engine.connect() as connection:
        return (await connection.execute(sa.text(sql))).scalar()


async def _tables(store: EventStore) -> set[str]:
    async with store.backend.engine.connect() as connection:
        return set(await connection.run_sync(lambda c: sa.inspect(c).get_table_names()))


def test_the_revisions_are_where_migrations_location_says() -> None:
    location = migrations_location()
    assert (location / "env.py").is_file()
    # The head revision among them, whatever its name.
    assert list((location / "versions").glob(f"{SCHEMA_HEAD}_*.py"))


async def test_our_revision_is_recorded_in_our_own_table(empty_url: str) -> None:
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        assert await _scalar(store, f"SELECT version_num FROM {VERSION_TABLE}") == (
            SCHEMA_HEAD
        )
        assert LEGACY_VERSION_TABLE not in await _tables(store)


@pytest.mark.parametrize("service_first", [True, False], ids=["service", "store"])
async def test_both_histories_upgrade_in_either_order(
    empty_url: str, tmp_path: Path, *, service_first: bool
) -> None:
    service = service_history(tmp_path, empty_url)
    async with EventStore.open(empty_url) as store:
        if service_first:
            await run_service(command.upgrade, service, "head")
            await store.migrate()
        else:
            await store.migrate()
            await run_service(command.upgrade, service, "head")
        assert await store.schema_revision() == SCHEMA_HEAD
        assert await _scalar(store, "SELECT version_num FROM alembic_version") == (
            SERVICE_REVISION
        )
        # Again: each history finds itself at its head and does nothing.
        await store.migrate()
        await run_service(command.upgrade, service, "head")
        assert {"orders", "executions", VERSION_TABLE, "alembic_version"} <= (
            await _tables(store)
        )
        # The service's downgrade leaves the store alone, and ours the service.
        await run_service(command.downgrade, service, "base")
        assert await store.schema_revision() == SCHEMA_HEAD
        assert "orders" not in await _tables(store)


def _service_drift(sync: sa.Connection, *, hooked: bool) -> list[Any]:
    """What the service's autogenerate would propose, with or without our hook."""
    options: dict[str, object] = {"include_object": include_object} if hooked else {}
    context = MigrationContext.configure(sync, opts=options)
    return list(compare_metadata(context, SERVICE_METADATA))


async def test_the_hook_keeps_the_services_autogenerate_off_the_store(
    url: str,
) -> None:
    async with (
        EventStore.open(url) as store,
        store.backend.engine.connect() as connection,
    ):
        unhooked = await connection.run_sync(_service_drift, hooked=False)
        hooked = await connection.run_sync(_service_drift, hooked=True)
    dropped = {diff[1].name for diff in unhooked if diff[0] == "remove_table"}
    assert {"execution_events", "executions", VERSION_TABLE} <= dropped
    assert [(diff[0], diff[1].name) for diff in hooked] == [("add_table", "orders")]


@pytest.mark.parametrize("legacy", ["0011", SCHEMA_HEAD])
async def test_a_database_that_recorded_us_in_alembic_version_is_adopted(
    url: str, legacy: str
) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        await store.executions.create(
            message_id=refs.message.id, graph_id=refs.graph.id, inputs={}
        )
        # As versions before 0.2 left it: our record in alembic's default table.
        await run_migration(store.backend, direction="downgrade", revision=legacy)
        async with store.backend.engine.begin() as connection:
            await connection.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
            await connection.execute(
                sa.text(  # alembic's own shape for its default table
                    f"CREATE TABLE {LEGACY_VERSION_TABLE} (version_num VARCHAR(32) "
                    f"NOT NULL, CONSTRAINT {LEGACY_VERSION_TABLE}_pkc "
                    "PRIMARY KEY (version_num))"
                )
            )
            await connection.execute(
                sa.text(f"INSERT INTO {LEGACY_VERSION_TABLE} VALUES (:legacy)"),
                {"legacy": legacy},
            )
        store.backend.forget_schema()
        assert await store.schema_revision() == legacy

        await store.migrate()

        assert await store.schema_revision() == SCHEMA_HEAD
        tables = await _tables(store)
        assert VERSION_TABLE in tables
        assert LEGACY_VERSION_TABLE not in tables
        assert await count_events(store) == 1  # nothing was run from the start


async def test_a_services_record_in_alembic_version_is_never_taken_for_ours(
    url: str,
) -> None:
    async with EventStore.open(url) as store:
        async with store.backend.engine.begin() as connection:
            await connection.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
            await connection.execute(
                sa.text(
                    f"CREATE TABLE {LEGACY_VERSION_TABLE} "
                    "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
                )
            )
            await connection.execute(
                sa.text(f"INSERT INTO {LEGACY_VERSION_TABLE} VALUES ('ae1027a6acf')")
            )
        store.backend.forget_schema()
        assert await store.schema_revision() is None
        with pytest.raises(SchemaNotMigrated):
            await store.threads.create(title="t")
        assert await _scalar(
            store, f"SELECT version_num FROM {LEGACY_VERSION_TABLE}"
        ) == ("ae1027a6acf")
