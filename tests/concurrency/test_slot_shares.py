"""Each slot's fair share is counted among the processes that run its projection.

Issue 10 item 3: a projector running the executions and ledger projections,
then a plain `eventstore project` (executions only). Counted over every
process, the first one's share fell to one slot: it gave the ledger slot up,
the second process does not run the ledger, and `project --status` showed
`leader none` while its lag grew for ever. Real processes, on both backends
(SQLite leadership is file locks, PostgreSQL's advisory locks).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from eventstore import EventStore, ExecutionStatus
from eventstore.backends.sqlite_leadership import lock_directory
from projections.slot_status import ProjectionStatus, projection_status
from tests.cli.runner import run_cli
from tests.helpers import count_positions, execution_in, make_references, raw_pg
from tests.processes.projector_process import create_ledger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

ROOT: Final = Path(__file__).parents[2]
WITHIN: Final = 60  # seconds: a deadline, never an expected duration


class Started:
    """Processes a test started, stopped (SIGTERM, then SIGKILL) after it."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        # A file, not a pipe: a chatty process must never block on its output.
        with (self.logs / f"process-{len(self.running)}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", *args], cwd=ROOT, stdout=log, stderr=log
            )
        self.running.append(process)
        return process

    def log(self) -> str:
        return "".join(path.read_text() for path in sorted(self.logs.glob("*.log")))

    def stop_all(self) -> None:
        for process in self.running:
            process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Started]:
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Started(logs)
    try:
        yield processes
    finally:
        processes.stop_all()


async def status_of(url: str) -> ProjectionStatus:
    async with EventStore.open(url) as store:
        return await projection_status(store)


async def wait_until(
    url: str, condition: Callable[[ProjectionStatus], bool], started: Started
) -> ProjectionStatus:
    """The projection status once `condition` holds (fails after WITHIN seconds)."""
    status = None
    try:
        async with asyncio.timeout(WITHIN):
            while True:
                status = await status_of(url)
                if condition(status):
                    return status
                for process in started.running:
                    assert process.poll() is None, started.log()
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"not reached within {WITHIN} s: {status}\n{started.log()}")


async def is_member(url: str, pid: int) -> bool:
    """Whether the projector process `pid` has joined (its lock connection or file)."""
    if url.startswith("sqlite"):
        directory = lock_directory(Path(url.removeprefix("sqlite:///")))
        return any(f"-{pid}-" in path.name for path in directory.glob("member-*"))
    admin = await raw_pg(url)
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE $1",
            f"eventstore-projector %:{pid}",
        )
    finally:
        await admin.close()
    return count > 0


def leaders(status: ProjectionStatus) -> dict[tuple[str, int], int | None]:
    """Each slot's leading process (by the pid in its host:pid identity)."""
    return {
        (slot.projection, slot.partition): (
            int(slot.leader.rpartition(":")[2]) if slot.leader else None
        )
        for slot in status.slots
    }


@pytest.mark.parametrize("partitions", [1, 2])
async def test_a_projection_run_by_one_process_keeps_its_leader(
    url: str, started: Started, partitions: int
) -> None:
    async with EventStore.open(url) as store:
        await create_ledger(store)
        refs = await make_references(store)
    both = started.start("tests.processes.projector_process", url, str(partitions))
    names = ("executions", "ledger")
    every_slot = {(name, p) for name in names for p in range(partitions)}
    await wait_until(
        url,
        lambda s: (
            set(leaders(s)) == every_slot and set(leaders(s).values()) == {both.pid}
        ),
        started,
    )
    plain = started.start(
        "eventstore.cli", "project", "--url", url, "--poll-interval", "0.1",
        "--partitions", str(partitions),
    )  # fmt: skip
    async with asyncio.timeout(WITHIN):
        while not await is_member(url, plain.pid):
            assert plain.poll() is None, started.log()
            await asyncio.sleep(0.05)

    # New events after the plain process joined: every slot must fold them.
    async with EventStore.open(url) as store:
        for _ in range(5):
            await execution_in(store, refs, ExecutionStatus.COMPLETED)
        head = await count_positions(store)
    status = await wait_until(
        url,
        lambda s: (
            s.head_position is not None
            and s.head_position >= head
            and all(slot.lag_events == 0 and slot.leader for slot in s.slots)
        ),
        started,
    )
    led = leaders(status)
    assert {led["ledger", p] for p in range(partitions)} == {both.pid}
    if partitions > 1:  # the executions partitions are shared between both
        await wait_until(
            url,
            lambda s: (
                {leaders(s)["executions", p] for p in range(partitions)}
                == {both.pid, plain.pid}
            ),
            started,
        )

    shown = run_cli("project", "--status", "--json", "--url", url)
    assert shown.returncode == 0, shown.stderr
    assert all(slot["leader"] for slot in json.loads(shown.stdout)["slots"])
