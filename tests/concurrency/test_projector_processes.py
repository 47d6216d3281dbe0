"""Projector processes on one PostgreSQL database: leaders, partitions, kills, lost backends.

Every process runs the executions projection and a ledger projection that
writes one row per applied event with no uniqueness, so the ledger proves
exactly-once: each event's position appears in it once, whatever was killed.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import EventStore, StoreSettings
from eventstore.cli.demo_workload import run_workload
from projections.slot_status import projection_status
from tests.helpers import (
    assert_projection_equals_fold,
    count_events,
    event_token_sum,
    eventually,
    raw_pg,
)
from tests.processes.projector_process import LEDGER, create_ledger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection

    import asyncpg

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).parents[2]


class Processes:
    """Projector processes started by a test, and stopped after it."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.running: list[subprocess.Popen[str]] = []

    def start(self, partitions: int) -> subprocess.Popen[str]:
        # A file, not a pipe: a chatty process must never block on stderr.
        with (self.logs / f"projector-{len(self.running)}.log").open("a") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.processes.projector_process",
                 self.url, str(partitions)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )  # fmt: skip
        assert process.stdout is not None
        ready = process.stdout.readline().strip()
        process.stdout.close()
        assert ready == "ready", self.log()
        self.running.append(process)
        return process

    def log(self) -> str:
        return "".join(path.read_text() for path in self.logs.glob("*.log"))

    def kill(self, process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self.running.remove(process)

    def stop_all(self) -> None:
        for process in self.running:
            process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.running.clear()


@pytest.fixture
async def processes(pg_url: str, tmp_path: Path) -> AsyncIterator[Processes]:
    async with EventStore.open(pg_url) as store:
        await create_ledger(store)
    started = Processes(pg_url, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


async def workload(store: EventStore, executions: int, seed: int) -> None:
    await run_workload(
        store, executions=executions, workers=8, seed=seed, on_change=lambda _: None
    )


async def wait_projected(url: str, *, within: float = 60) -> None:
    """Wait until every slot has folded every event (a fresh store each time)."""
    async with asyncio.timeout(within):
        while True:
            async with EventStore.open(url) as store:
                status = await projection_status(store)
            slots = status.slots
            if slots and all(slot.lag_events == 0 for slot in slots):
                return
            await asyncio.sleep(0.1)


async def assert_exactly_once(url: str) -> None:
    """The projection equals the fold, and the ledger holds each event once."""
    async with EventStore.open(url) as store:
        rows = await assert_projection_equals_fold(store)
        events = await count_events(store)
        async with store.backend.connect_read() as connection:
            total, distinct = (
                await connection.execute(
                    sa.select(
                        sa.func.count(), sa.func.count(sa.distinct(LEDGER.c.position))
                    )
                )
            ).one()
        assert (total, distinct) == (events, events)
        tokens, _ = await event_token_sum(store)
        assert tokens == sum(
            int(row.metrics.get("prompt_tokens", 0))
            + int(row.metrics.get("completion_tokens", 0))
            for row in rows.values()
        )


async def leader_pid(url: str, slot: str) -> int | None:
    async with EventStore.open(url) as store:
        holders = await store.backend.slot_holders([slot])
    holder = holders.get(slot)
    return None if holder is None else int(holder.identity.rpartition(":")[2])


async def wait_for_leader(url: str, slot: str, pid: int) -> None:
    """Wait until the process `pid` leads `slot`."""

    async def leads() -> bool:
        return await leader_pid(url, slot) == pid

    await eventually(leads, f"led {slot} from process {pid}", within=60)


async def backends_of(
    admin: asyncpg.Connection, pid: int, *, besides: Collection[int] = ()
) -> list[int]:
    """The server pids of a process's pools and lock connection (application_name
    ends with host:pid), leaving out `besides`: backends already terminated,
    which stay in pg_stat_activity until they have exited."""
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE $1 "
        "AND pid <> ALL($2::int[])",
        f"%:{pid}",
        list(besides),
    )
    return [row["pid"] for row in rows]


@pytest.mark.parametrize(
    ("count", "partitions"), [(2, 1), (2, 4), (4, 4)], ids=["2x1", "2x4", "4x4"]
)
async def test_processes_share_the_work_and_apply_every_event_once(
    pg_url: str, processes: Processes, count: int, partitions: int
) -> None:
    for _ in range(count):
        processes.start(partitions)
    async with EventStore.open(pg_url, settings=StoreSettings(pool_size=10)) as store:
        await workload(store, executions=80, seed=count * partitions)
    await wait_projected(pg_url)
    await assert_exactly_once(pg_url)
    async with EventStore.open(pg_url) as store:
        status = await projection_status(store)
    assert len(status.slots) == 2 * partitions  # executions and ledger
    leaders = {slot.leader for slot in status.slots}
    assert None not in leaders
    if partitions > 1:
        assert len(leaders) == count  # the slots are spread over every process


async def test_a_standby_takes_over_when_the_leader_is_killed(
    pg_url: str, processes: Processes
) -> None:
    first = processes.start(1)
    await wait_for_leader(pg_url, "executions:0/1", first.pid)
    standby = processes.start(1)
    async with EventStore.open(pg_url, settings=StoreSettings(pool_size=10)) as store:
        await workload(store, executions=30, seed=1)
        await wait_projected(pg_url)
        leader = await leader_pid(pg_url, "executions:0/1")
        assert leader == first.pid
        processes.kill(first)
        await workload(store, executions=30, seed=2)
    await wait_projected(pg_url, within=30)
    assert await leader_pid(pg_url, "executions:0/1") == standby.pid
    await assert_exactly_once(pg_url)


async def test_sigkill_at_random_moments_never_applies_anything_twice(
    pg_url: str, processes: Processes
) -> None:
    async with EventStore.open(pg_url, settings=StoreSettings(pool_size=10)) as store:
        await workload(store, executions=250, seed=3)
    rng = random.Random(5)
    for _ in range(4):
        process = processes.start(1)
        await asyncio.sleep(rng.uniform(0.2, 1.2))
        processes.kill(process)
    processes.start(1)
    await wait_projected(pg_url, within=120)
    await assert_exactly_once(pg_url)


async def test_terminated_backends_are_reconnected(
    pg_url: str, processes: Processes
) -> None:
    process = processes.start(2)
    async with EventStore.open(pg_url, settings=StoreSettings(pool_size=10)) as store:
        writing = asyncio.create_task(workload(store, executions=60, seed=4))
        admin = await raw_pg(pg_url)
        try:
            gone: set[int] = set()
            for _ in range(3):
                # Every backend of the projector process, once it has (again)
                # a pool connection and its lock connection: new ones, not
                # those of the last round, which may still be exiting.
                async def connected() -> bool:
                    return len(await backends_of(admin, process.pid, besides=gone)) >= 2

                await eventually(connected, "reconnected", within=60)
                # A backend may exit on its own between the listing and the
                # termination (a reconnect in progress): count only the
                # terminated, until two of this round were.
                terminated = 0

                async def two_terminated() -> bool:
                    nonlocal terminated
                    alive = await backends_of(admin, process.pid, besides=gone)
                    terminated += int(
                        await admin.fetchval(
                            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                            "FROM unnest($1::int[]) AS pid",
                            alive,
                        )
                    )
                    gone.update(alive)
                    return terminated >= 2

                await eventually(two_terminated, "two backends terminated", within=60)
        finally:
            await admin.close()
        await writing
    await wait_projected(pg_url, within=60)
    assert process.poll() is None  # it survived and reconnected
    await assert_exactly_once(pg_url)
