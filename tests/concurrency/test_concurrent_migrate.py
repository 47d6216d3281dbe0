"""Migrations started at once on one empty database: one migrates, the others wait.

Without a lock, concurrent `CREATE TABLE`s collide in the catalog (an
IntegrityError on pg_type, or on SQLite "table already exists") and every
runner but one fails. With it, the others find the schema at head.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import EventStore
from eventstore.migrating import SCHEMA_HEAD
from tests.helpers import make_references

if TYPE_CHECKING:
    from pathlib import Path

PROCESSES = 6
COROUTINES = 3


async def _assert_migrated_once(url: str) -> None:
    async with EventStore.open(url) as store:
        assert await store.schema_revision() == SCHEMA_HEAD
        async with store.backend.connect_read() as connection:
            versions = await connection.execute(
                sa.text("SELECT version_num FROM eventstore_alembic_version")
            )
            assert versions.scalars().all() == [SCHEMA_HEAD]
        # The schema works: a first write and read go through.
        refs = await make_references(store)
        execution_id = await store.executions.create(
            message_id=refs.message.id, graph_id=refs.graph.id, inputs={}
        )
        assert len(await store.executions.history(execution_id)) == 1


# `eventstore migrate URL` in a process that says it is READY (imported),
# then waits for GO: once every one is ready, they reach the database together.
AT_ONCE = """
import sys, time
from pathlib import Path
import eventstore.cli
ready, go, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not go.exists():
    time.sleep(0.001)
sys.argv = ["eventstore", "migrate", "--url", url]
eventstore.cli.main()
"""
STARTUP_DEADLINE = 60.0


async def test_migrations_in_several_processes_at_once(
    empty_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    runners = [
        subprocess.Popen(  # noqa: ASYNC220 - started together, waited below
            [sys.executable, "-c", AT_ONCE, str(flag), str(go), empty_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not all(flag.exists() for flag in ready):
        assert time.monotonic() < deadline, "the migrate processes did not start"
        assert all(runner.poll() is None for runner in runners)
        await asyncio.sleep(0.01)
    go.touch()
    outcomes = [
        await asyncio.to_thread(runner.communicate, timeout=120) for runner in runners
    ]
    for runner, (stdout, stderr) in zip(runners, outcomes, strict=True):
        assert runner.returncode == 0, stderr
        assert f"schema at revision {SCHEMA_HEAD}" in stdout
    await _assert_migrated_once(empty_url)


async def test_migrations_in_several_coroutines_at_once(empty_url: str) -> None:
    stores = [await EventStore.open(empty_url) for _ in range(COROUTINES)]
    try:
        results = await asyncio.gather(
            *(store.migrate() for store in stores), return_exceptions=True
        )
    finally:
        for store in stores:
            await store.aclose()
    assert [r for r in results if isinstance(r, BaseException)] == []
    await _assert_migrated_once(empty_url)


@pytest.mark.parametrize("repeat", range(2))
async def test_migrations_in_one_store_at_once(empty_url: str, repeat: int) -> None:
    """The same store, several tasks: they share its pool, and still wait in turn."""
    del repeat
    async with EventStore.open(empty_url) as store:
        results = await asyncio.gather(
            *(store.migrate() for _ in range(COROUTINES)), return_exceptions=True
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
    await _assert_migrated_once(empty_url)
