"""A process opens at most 3 x pool_size + 2 PostgreSQL connections (README, Configuration)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from eventstore import EventStore, ExecutionStatus, StoreSettings
from projections import ExecutionsView, Projector
from tests.conftest import ADMIN_URL
from tests.helpers import execution_in, make_references

pytestmark = pytest.mark.postgres

POOL_SIZE = 2
BUDGET = 3 * POOL_SIZE + 2


async def test_every_path_at_once_stays_within_the_budget(pg_url: str) -> None:
    database = make_url(pg_url).database
    observer = await asyncpg.connect(ADMIN_URL)  # on another database: not counted
    most = 0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal most
        while not stop.is_set():
            count = await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
            )
            most = max(most, count)
            await asyncio.sleep(0.005)

    settings = StoreSettings(pool_size=POOL_SIZE)
    try:
        async with EventStore.open(pg_url, settings=settings) as store:
            refs = await make_references(store)
            watcher = asyncio.create_task(watch())
            projector = Projector(store, poll_interval=0.01)
            daemon = asyncio.create_task(projector.run(stop))
            view = ExecutionsView(store)

            async def reader() -> None:
                while not stop.is_set():
                    await view.count()

            readers = [asyncio.create_task(reader()) for _ in range(4 * POOL_SIZE)]
            # Appends (asyncpg's pool), waits (the listener), reads and the
            # projector (SQLAlchemy's pool and the leader lock), all at once.
            runs = await asyncio.gather(
                *(
                    execution_in(store, refs, ExecutionStatus.COMPLETED)
                    for _ in range(8 * POOL_SIZE)
                )
            )
            await asyncio.gather(
                *(store.executions.wait(run, timeout=30) for run in runs)
            )
            stop.set()
            await asyncio.gather(daemon, *readers)
            await watcher
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await observer.close()
    assert most <= BUDGET, f"{most} connections, over 3 x {POOL_SIZE} + 2"
    # The load did reach beyond one pool: the bound is not vacuous.
    assert most > POOL_SIZE, most
