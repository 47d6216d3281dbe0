"""bench/projection.py's sections on more than one fold at a time: partitioned
projector processes, and a projector daemon's lag behind live writers."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import TYPE_CHECKING, Final

from bench import harness
from bench.harness import connected, eventstore_cli, timed
from bench.workload import USAGE
from eventstore import EventStore
from eventstore.settings import StoreSettings

if TYPE_CHECKING:
    from uuid import UUID

    from bench.harness import Timing

LABELS: Final = {
    "partitions_1": "`eventstore project --until-caught-up --rebuild-at-start 0`, 1 process",
    "partitions_4": "4 processes `... --rebuild-at-start 0 --partitions 4`",
}
CHECKPOINT_SQL: Final = (
    "SELECT transaction_id::text::bigint, position FROM projection_checkpoints "
    "WHERE name = 'executions' ORDER BY transaction_id DESC, position DESC LIMIT 1"
)
WHERE_SQL: Final = (
    "SELECT stream_id, version, transaction_id::text::bigint, position "
    "FROM execution_events WHERE stream_id = ANY($1::uuid[])"
)
WATCH_SECONDS: Final = 0.002


async def reset_projection(dsn: str) -> None:
    """Empty `executions` and drop every checkpoint (a 4-partition run leaves 4)."""
    await harness.execute(
        dsn, "TRUNCATE executions", "DELETE FROM projection_checkpoints"
    )


def projected(stdout: str) -> int:
    """The events `eventstore project --until-caught-up` says it applied."""
    if (found := re.search(r"projected ([\d,]+) events", stdout)) is None:
        raise RuntimeError(f"unexpected output of the CLI: {stdout!r}")
    return int(found.group(1).replace(",", ""))


async def partitions(dsn: str, subject: str) -> tuple[int, Timing]:
    """`partitions_N`: N projector processes from zero, started together; the
    events they say they applied, the Timing from the first spawn to the last exit."""
    await reset_projection(dsn)
    processes = int(subject.rsplit("_", 1)[1])
    # In batches: a rebuild at the start would not split among the processes.
    command = eventstore_cli(
        "project", "--until-caught-up", "--url", dsn, "--rebuild-at-start", "0"
    )
    if processes > 1:
        command += ["--partitions", str(processes)]

    async def together() -> list[tuple[float, float, str]]:
        # One failing stops the others: none may project into the next run.
        try:
            async with asyncio.TaskGroup() as group:
                spawned = [
                    group.create_task(harness.spawn(command)) for _ in range(processes)
                ]
        except* RuntimeError as failed:  # the report names the first failure
            raise failed.exceptions[0] from None
        return [task.result() for task in spawned]

    outputs, timing = await timed(
        together, harness.CURRENT_DATABASE.get(), sample_server=True
    )
    return sum(projected(stdout) for _, _, stdout in outputs), timing


async def _watch(
    dsn: str, stop: asyncio.Event, seen: list[tuple[float, int, int]]
) -> None:
    """Poll the checkpoint; every move as (when, transaction id, position)."""
    async with connected(dsn) as connection:
        while not stop.is_set():
            row = await connection.fetchrow(CHECKPOINT_SQL)
            if row is not None and (not seen or tuple(row) != seen[-1][1:]):
                seen.append((time.monotonic(), *row))
            await asyncio.sleep(WATCH_SECONDS)


async def _write(
    store: EventStore,
    references: tuple[UUID, UUID],
    schedule: tuple[float, float, float],
    appended: list[tuple[UUID, int, float]],
) -> None:
    """Lifecycles, one event at each tick of (start, interval, until); each
    call's (stream, version, return time) to `appended`."""
    (message_id, graph_id), (start, interval, until) = references, schedule
    executions, execution_id = store.executions, message_id
    for tick in itertools.count():
        if (due := start + tick * interval) >= until:
            return
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        version = tick % 4 + 1
        if version == 1:
            execution_id = await executions.create(
                message_id=message_id, graph_id=graph_id, inputs={"tick": tick}
            )
        elif version == 2:
            await executions.start(execution_id, worker_id="lag")
        elif version == 3:
            await executions.progress(execution_id, step=1, detail={}, metrics=USAGE)
        else:
            await executions.complete(execution_id, result={"ok": True}, metrics=USAGE)
        appended.append((execution_id, version, time.monotonic()))


async def lag(dsn: str, rate: float, writers: int, seconds: float) -> dict[str, float]:
    """One projector daemon behind `writers` paced to `rate` events/s in all;
    each event's lag in ms: when the checkpoint passed it, after its call returned."""
    # One caught-up partition first: a 1-partition daemon refuses a 4-way split.
    await reset_projection(dsn)
    await harness.spawn(eventstore_cli("project", "--until-caught-up", "--url", dsn))
    seen: list[tuple[float, int, int]] = []
    appended: list[tuple[UUID, int, float]] = []
    daemon_command = eventstore_cli("project", "--url", dsn, "--poll-interval", "0.5")
    daemon = await asyncio.create_subprocess_exec(*daemon_command, stdout=-3, stderr=-1)
    settings = StoreSettings(pool_size=writers + 2)
    try:
        async with EventStore.open(dsn, settings=settings) as store:
            thread = await store.threads.create(title="lag")
            message = await store.messages.create(
                thread_id=thread.id, role="user", content="lag"
            )
            graph = await store.graphs.create(name="lag", version=1, definition={})
            await asyncio.sleep(3.0)  # the daemon's start-up
            stop = asyncio.Event()
            watcher = asyncio.create_task(_watch(dsn, stop, seen))
            interval, start = writers / rate, time.monotonic() + 0.1
            await asyncio.gather(
                *(
                    _write(
                        store,
                        (message.id, graph.id),
                        (start + w * interval / writers, interval, start + seconds),
                        appended,
                    )
                    for w in range(writers)
                )
            )
            await asyncio.sleep(5.0)  # for the daemon to pass the last events
            stop.set()
            await watcher
    finally:
        if daemon.returncode is None:
            daemon.terminate()
        _, stderr = await asyncio.wait_for(daemon.communicate(), timeout=30)
    if daemon.returncode not in (0, -15):
        raise RuntimeError(
            f"the projector daemon failed: {stderr.decode(errors='replace')}"
        )
    async with connected(dsn) as connection:
        rows = await connection.fetch(WHERE_SQL, list({s for s, _, _ in appended}))
    where = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    lags = []
    for stream, version, returned in appended:
        key = where[(stream, version)]
        passed = (at for at, *checkpoint in seen if tuple(checkpoint) >= key)
        if (at := next(passed, None)) is not None:
            lags.append(max(0.0, at - returned) * 1000)
    if not lags:
        raise RuntimeError("the checkpoint passed none of the events written")
    elapsed = max(returned for _, _, returned in appended) - start
    quantiles = {
        f"p{round(q * 100)}": harness.percentile(lags, q) for q in (0.5, 0.95, 0.99)
    }
    return quantiles | {
        "rate": len(appended) / elapsed,
        "events": len(appended),
        "max": max(lags),
        "missed": len(appended) - len(lags),
    }
