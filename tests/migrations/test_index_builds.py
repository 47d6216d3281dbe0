"""Indexes over the log are built concurrently on PostgreSQL (issue 11).

Revisions 0003 and 0005 built the status-history index inside their
transaction: its SHARE lock held every append back for the whole build
(about a second per million events). Built concurrently, an append goes on
while the build waits; and what a failed build left behind (an invalid
index) is dropped when the revision runs again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from eventstore import EventStore
from eventstore.migrating import run_migration
from tests.helpers import eventually, raw_pg
from tests.migrations.test_migrations import drift_of

if TYPE_CHECKING:
    import asyncpg

pytestmark = pytest.mark.postgres

INDEX = "ix_execution_events_status_history"
# Revision -> the one before it, and the name a failed build of it leaves.
BUILDS = {"0003": ("0002", INDEX), "0005": ("0004", f"{INDEX}_building")}


async def _index_state(connection: asyncpg.Connection) -> dict[str, bool]:
    rows = await connection.fetch(
        "SELECT c.relname, i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE $1",
        f"{INDEX}%",
    )
    return {row["relname"]: row["indisvalid"] for row in rows}


@pytest.mark.parametrize("revision", list(BUILDS))
async def test_an_append_goes_on_while_the_index_builds(
    empty_pg_url: str, revision: str
) -> None:
    before, _ = BUILDS[revision]
    async with EventStore.open(empty_pg_url) as store:
        await run_migration(store.backend, direction="upgrade", revision=before)
        # An append in flight: its transaction holds the log's ROW EXCLUSIVE lock.
        in_flight = await raw_pg(empty_pg_url)
        other = await raw_pg(empty_pg_url)
        try:
            await in_flight.execute(
                "BEGIN; LOCK TABLE execution_events IN ROW EXCLUSIVE MODE"
            )
            migrating = asyncio.create_task(
                run_migration(store.backend, direction="upgrade", revision=revision)
            )

            async def build_waits() -> bool:
                waiting = await other.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND query ILIKE '%INDEX%'"
                )
                return bool(waiting)

            await eventually(build_waits, "the index build waited for the append")
            # A new append takes the same lock, and gets it at once: a build
            # in the revision's transaction would queue it behind its SHARE lock.
            async with other.transaction():
                await other.execute(
                    "LOCK TABLE execution_events IN ROW EXCLUSIVE MODE NOWAIT"
                )
            await in_flight.execute("COMMIT")
            await asyncio.wait_for(migrating, 60)
            assert await _index_state(other) == {INDEX: True}
        finally:
            await in_flight.close()
            await other.close()
        await store.migrate()
        assert await drift_of(store) == []


@pytest.mark.parametrize("revision", list(BUILDS))
async def test_a_failed_build_is_cleaned_up_by_the_next_run(
    empty_pg_url: str, revision: str
) -> None:
    before, leftover = BUILDS[revision]
    async with EventStore.open(empty_pg_url) as store:
        await run_migration(store.backend, direction="upgrade", revision=before)
        admin = await raw_pg(empty_pg_url)
        try:
            # What an interrupted CREATE INDEX CONCURRENTLY leaves: an invalid index.
            await admin.execute(
                f"CREATE INDEX {leftover} ON execution_events (stream_id);"
                "UPDATE pg_index SET indisvalid = false "
                f"WHERE indexrelid = '{leftover}'::regclass"
            )
            await run_migration(store.backend, direction="upgrade", revision=revision)
            assert await _index_state(admin) == {INDEX: True}
        finally:
            await admin.close()
        await store.migrate()
        assert await drift_of(store) == []
