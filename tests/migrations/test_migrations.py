"""The alembic tree builds exactly the schema of `eventstore.schema`, both ways."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from eventstore import EventStore, NewEvent, SchemaNotMigrated, schema
from eventstore.migrating import SCHEMA_HEAD, alembic_config, run_migration

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Connection


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": False},
    )
    return list(compare_metadata(context, schema.metadata))


async def drift_of(store: EventStore) -> list[object]:
    async with store.backend.engine.connect() as connection:
        return await connection.run_sync(_drift)


def test_the_code_needs_the_head_revision() -> None:
    assert (
        ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD
    )


async def test_upgrade_head_equals_the_metadata(empty_url: str) -> None:
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        assert await store.schema_revision() == SCHEMA_HEAD
        assert await drift_of(store) == []


async def test_downgrade_then_upgrade(empty_url: str) -> None:
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        await run_migration(store.backend, direction="downgrade", revision="base")
        assert await store.schema_revision() is None
        store.backend.forget_schema()
        with pytest.raises(SchemaNotMigrated):
            await store.append(
                "0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71", [_event()], stream_type="note"
            )
        await store.migrate()
        assert await drift_of(store) == []
        result = await store.append(
            "0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71", [_event()], stream_type="note"
        )
        assert result.version == 1


async def test_migrate_is_idempotent(url: str) -> None:
    async with EventStore.open(url) as store:
        await store.append(
            "0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71", [_event()], stream_type="note"
        )
        await store.migrate()
        assert await store.schema_revision() == SCHEMA_HEAD
        assert len([e async for e in store.read_all()]) == 1


async def test_an_unmigrated_database_says_so(empty_url: str) -> None:
    async with EventStore.open(empty_url) as store:
        assert await store.schema_revision() is None
        with pytest.raises(SchemaNotMigrated, match="eventstore migrate") as caught:
            await store.append(
                "0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71", [_event()], stream_type="note"
            )
        assert caught.value.current is None
        assert caught.value.head == SCHEMA_HEAD
        with pytest.raises(SchemaNotMigrated):
            await store.threads.create(title="t")
        with pytest.raises(SchemaNotMigrated):
            await store.executions.get("0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71")
        with pytest.raises(SchemaNotMigrated):
            [e async for e in store.read_all()]


def _event() -> NewEvent:
    return NewEvent(type="Note", data={"n": 1})


@pytest.mark.slow
def test_the_wheel_ships_the_migrations_and_migrates_when_installed(
    tmp_path: Path,
) -> None:
    """`store.migrate()` works from an installed copy, not only from the source tree."""
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path / "dist"), str(root)],
        check=True,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("eventstore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "eventstore/_migrations/env.py" in names
    assert "eventstore/_migrations/versions/0001_event_log.py" in names
    assert "projections/__init__.py" in names
    assert "eventstore/py.typed" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q",
         "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    database = f"sqlite:///{tmp_path / 'installed.db'}"
    script = (
        "import asyncio, eventstore, eventstore.migrating as m\n"
        f"assert eventstore.__file__.startswith({str(target)!r}), eventstore.__file__\n"
        f"assert str(m.migrations_path()).startswith({str(target)!r})\n"
        "async def main():\n"
        f"    async with eventstore.EventStore.open({database!r}) as store:\n"
        "        await store.migrate()\n"
        "        print(await store.schema_revision())\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == SCHEMA_HEAD


async def test_the_drift_check_sees_a_difference(url: str) -> None:
    """The comparison above is not vacuous: a column the migrations lack shows up."""
    changed = sa.MetaData(naming_convention=schema.NAMING_CONVENTION)
    for table in schema.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["executions"].append_column(sa.Column("extra", sa.Integer))

    def drift(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, changed))

    async with (
        EventStore.open(url) as store,
        store.backend.engine.connect() as connection,
    ):
        differences = await connection.run_sync(drift)
    assert [d[0] for d in differences if isinstance(d, tuple)] == ["add_column"]
