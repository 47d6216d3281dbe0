"""A projector process for the process-level tests: `python -m tests.processes.projector_process URL N`.

It runs the executions projection and a ledger projection that records
every event it applies, with no uniqueness: a ledger holding a position
twice would prove a batch applied twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING

import sqlalchemy as sa

from eventstore import EventStore
from projections import ExecutionsProjection, Projector

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import RecordedEvent

LEDGER = sa.Table(
    "test_ledger",
    sa.MetaData(),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)


class Ledger:
    """Appends one row per applied event (the test's witness of exactly-once)."""

    name = "ledger"

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        await connection.execute(
            sa.insert(LEDGER),
            [{"position": event.position, "pid": os.getpid()} for event in events],
        )

    async def reset(self, connection: AsyncConnection) -> None:
        await connection.execute(sa.delete(LEDGER))


async def create_ledger(store: EventStore) -> None:
    """Create the ledger table (the tests call it before starting processes)."""
    async with store.backend.begin_write() as connection:
        await connection.run_sync(lambda sync: LEDGER.create(sync, checkfirst=True))


async def main(url: str, partitions: int) -> None:
    async with EventStore.open(url) as store:
        projector = Projector(
            store,
            [ExecutionsProjection(store.backend), Ledger()],
            partitions=partitions,
            batch_size=25,
            poll_interval=0.1,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print("ready", flush=True)  # noqa: T201 - the test waits for it
        await projector.run(stop)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
