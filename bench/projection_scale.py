"""Projection at scale, on a log of bench/projection_log.py (or, with
--copy-log, bench/audit_log.py's): ``rebuild`` (the shadow-table rebuild in a
child process, by the CLI and as a library call, against the raw fold),
``partitions`` (1 projector process against 4 with `--partitions 4`), ``lag``
(one projector daemon behind paced lifecycle writers, the checkpoint polled
every 2 ms). Prints one JSON object per measurement and appends it to --json.

.venv/bin/python -m bench.projection_scale --events 200000 --rounds 3
.venv/bin/python -m bench.projection_scale --events 1000000 --rounds 1 --sections rebuild
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench import audit_log, harness, projection, projection_baseline, projection_log
from bench.harness import Server, connected, eventstore_cli
from bench.workload import USAGE
from eventstore import EventStore
from eventstore.settings import StoreSettings
from projections.executions import ExecutionsProjection
from projections.rebuild import DEFAULT_BATCH, run_rebuild

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from uuid import UUID

CHECKPOINT_SQL: Final = (
    "SELECT transaction_id::text::bigint AS t, position FROM projection_checkpoints "
    "WHERE name = 'executions' ORDER BY transaction_id DESC, position DESC LIMIT 1"
)
WATCH_INTERVAL: Final = 0.002
# The rows the COPY-loaded log references (bench/audit.py generates the events only).
REFERENCES_SQL: Final = (
    "INSERT INTO threads (id, title) SELECT DISTINCT (data->>'thread_id')::uuid, "
    "'bench' FROM execution_events WHERE type = 'ExecutionCreated'",
    "INSERT INTO graphs (id, name, version, definition) SELECT g, g::text, '1', "
    "'{}'::jsonb FROM (SELECT DISTINCT (data->>'graph_id')::uuid AS g "
    "FROM execution_events WHERE type = 'ExecutionCreated') AS distinct_graphs",
    "INSERT INTO messages (id, thread_id, role, content) SELECT DISTINCT "
    "(data->>'message_id')::uuid, (data->>'thread_id')::uuid, 'user', 'q' "
    "FROM execution_events WHERE type = 'ExecutionCreated'",
)


def emit(record: dict[str, Any], path: Path | None) -> None:
    """Print a measurement and append it to the JSON-lines file."""
    line = json.dumps(record)
    print(line, flush=True)
    if path is not None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


async def make_log(
    dsn: str, events: int, writers: int, *, copy: bool
) -> tuple[int, int]:
    """Fill a fresh database with a log: appended through the store by
    bench/projection_log.py, or (`copy`) bench/audit.py's COPY-loaded log (~10
    events per execution, hash chains, several outcomes) plus the rows it
    references. Returns its events and executions."""
    if copy:
        await harness.migrate(dsn)
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=1) as executor:
            await asyncio.get_running_loop().run_in_executor(
                executor, audit_log.load_log, dsn, events, 7
            )
        await harness.execute(dsn, *REFERENCES_SQL, "ANALYZE")
        seconds = time.perf_counter() - started
    else:
        shape = projection_log.LogShape(executions=events // 4, writers=writers)
        async with harness.migrated_store(dsn, writers) as store:
            seconds = await projection_log.generate(store, shape)
        await harness.execute(dsn, "ANALYZE")
    await projection_baseline.setup(dsn)
    async with connected(dsn) as connection:
        total, streams = await projection_log.counts(connection)
    print(
        f"# {'COPY log' if copy else 'log'} {harness.CURRENT_DATABASE.get()}: {total:,} events, "
        f"{streams:,} executions, {'loaded' if copy else 'generated'} in {seconds:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return total, streams


async def count_rows(dsn: str, table: str) -> int:
    """Rows of a table."""
    return int(await harness.fetchval(dsn, f"SELECT count(*) FROM {table}"))


# --- section 1: rebuild against the raw fold ---------------------------------------


async def _child_rebuild(dsn: str, batch_size: int) -> None:
    """`run_rebuild` called as a library (the collector's default settings)."""
    async with EventStore.open(dsn, settings=StoreSettings(pool_size=2)) as store:
        report = await run_rebuild(
            store, ExecutionsProjection(store.backend), batch_size=batch_size
        )
    print(json.dumps(dataclasses.asdict(report)), flush=True)


def _run_measured(argv: Sequence[str]) -> tuple[int, str, str, int]:
    """Run a child to its end: exit code, stdout, stderr, its own peak RSS in KiB
    (from `os.wait4`: RUSAGE_CHILDREN would give the largest child's so far)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err)  # noqa: S603
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            process.returncode,
            out.read().decode(),
            err.read().decode(errors="replace"),
            usage.ru_maxrss,
        )


async def measure_rebuild(dsn: str, batch_size: int, *, cli: bool) -> dict[str, Any]:
    """A rebuild in a child process: its own timing, its wall time, its peak RSS;
    `eventstore rebuild --json` (which tunes the collector for batches) if `cli`,
    else `run_rebuild` from a plain script (the collector's defaults)."""
    await harness.execute(dsn, "CHECKPOINT")
    load = harness.load_average()
    if cli:
        argv = eventstore_cli("rebuild", "--url", dsn, "--json")
    else:
        argv = [sys.executable, "-m", "bench.projection_scale", "--child-rebuild", dsn]
    wall = time.perf_counter()
    code, stdout, stderr, peak_kib = await asyncio.to_thread(
        _run_measured, [*argv, "--batch-size", str(batch_size)]
    )
    wall_seconds = time.perf_counter() - wall
    if code != 0:
        raise RuntimeError(f"rebuild child failed ({code}): {stderr}")
    report = json.loads(stdout)
    return {
        "events": report["events"],
        "seconds": report["seconds"],
        "swapped": report["swapped"],
        "swap_seconds": report["swap_seconds"],
        "wall_seconds_with_startup": wall_seconds,
        "events_per_second": report["events"] / report["seconds"],
        "peak_rss_mb": peak_kib / 1024,
        "load_before": load,
    }


async def measure_raw(dsn: str, batch_size: int) -> dict[str, Any]:
    """The raw asyncpg fold, on a connection opened before the clock starts."""
    load = harness.load_average()
    events, timing = await projection.measure_raw_fold(dsn, batch_size)
    seconds = timing.seconds
    return {
        "events": events,
        "seconds": seconds,
        "events_per_second": events / seconds,
        "load_before": load,
    }


async def section_rebuild(
    dsn: str, args: argparse.Namespace, events: int, streams: int
) -> None:
    """Interleaved rounds: raw fold, CLI rebuild, library rebuild; the order rotating."""
    batch_size = args.batch_size
    for number in range(1, args.rounds + 1):
        for subject in harness.rotated(
            ("raw", "rebuild_cli", "rebuild_library"), number
        ):
            if subject == "raw":
                record = await measure_raw(dsn, batch_size)
                rows = await count_rows(dsn, "raw_executions")
            else:
                record = await measure_rebuild(
                    dsn, batch_size, cli=subject == "rebuild_cli"
                )
                rows = await count_rows(dsn, "executions")
            record.update(
                section="rebuild",
                subject=subject,
                round=number,
                batch_size=batch_size,
                rows=rows,
                rows_ok=rows == streams,
            )
            emit(record, args.json)


# --- section 2: partitions ----------------------------------------------------------


async def _reset_projection(dsn: str) -> None:
    await harness.execute(
        dsn, "TRUNCATE executions", "DELETE FROM projection_checkpoints", "CHECKPOINT"
    )


async def measure_projectors(dsn: str, processes: int, events: int) -> dict[str, Any]:
    """`processes` projector processes started together, until all have exited."""
    await _reset_projection(dsn)
    arguments = ["project", "--until-caught-up", "--url", dsn]
    if processes > 1:
        arguments += ["--partitions", str(processes)]
    load, children, started = (
        harness.load_average(),
        harness.children_cpu(),
        time.perf_counter(),
    )
    spawned = [
        await asyncio.create_subprocess_exec(
            *eventstore_cli(*arguments),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in spawned))
    seconds = time.perf_counter() - started
    failed = [
        err.decode(errors="replace")
        for p, (_, err) in zip(spawned, outputs, strict=True)
        if p.returncode != 0
    ]
    if failed:
        raise RuntimeError(f"projector failed: {failed}")
    return {
        "processes": processes,
        "seconds": seconds,
        "events_per_second": events / seconds,
        "children_cpu_seconds": harness.children_cpu() - children,
        "stdout": [out.decode(errors="replace").strip() for out, _ in outputs],
        "load_before": load,
    }


async def section_partitions(
    dsn: str, args: argparse.Namespace, events: int, streams: int
) -> None:
    """1 process against 4 partitioned ones, interleaved."""
    for number in range(1, args.partition_rounds + 1):
        for processes in harness.rotated((1, 4), number):
            record = await measure_projectors(dsn, processes, events)
            rows = await count_rows(dsn, "executions")
            record.update(
                section="partitions", round=number, rows=rows, rows_ok=rows == streams
            )
            emit(record, args.json)


# --- section 3: live lag ------------------------------------------------------------


async def _watch(
    dsn: str, stop: asyncio.Event, samples: list[tuple[float, int, int]]
) -> None:
    async with connected(dsn) as connection:
        last: tuple[int, int] | None = None
        while not stop.is_set():
            row = await connection.fetchrow(CHECKPOINT_SQL)
            now = time.monotonic()
            if row is not None and (int(row["t"]), int(row["position"])) != last:
                last = (int(row["t"]), int(row["position"]))
                samples.append((now, *last))
            await asyncio.sleep(WATCH_INTERVAL)


async def _lag_writer(
    store: EventStore,
    message_id: UUID,
    graph_id: UUID,
    *,
    index: int,
    interval: float,
    start: float,
    until: float,
    appended: list[tuple[UUID, int, float]],
) -> None:
    """Lifecycles, one event every `interval` from `start` until `until`; each
    append's (stream, version, when it returned) goes to `appended`."""
    executions, execution_id = store.executions, message_id
    for tick in itertools.count():
        due = start + tick * interval
        if due >= until:
            return
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        version = tick % 4 + 1
        if version == 1:
            execution_id = await executions.create(
                message_id=message_id, graph_id=graph_id, inputs={"w": index}
            )
        elif version == 2:
            await executions.start(execution_id, worker_id=f"w{index}")
        elif version == 3:
            await executions.progress(
                execution_id, step=1, detail={"w": index}, metrics=USAGE
            )
        else:
            await executions.complete(execution_id, result={"ok": True}, metrics=USAGE)
        appended.append((execution_id, version, time.monotonic()))


async def section_lag(
    dsn: str, args: argparse.Namespace, events: int, streams: int
) -> None:
    """One projector daemon; writers paced to --lag-rate events/s in total."""
    del events, streams
    rate, writers, seconds = args.lag_rate, args.lag_writers, args.lag_seconds
    # Start from one partition, caught up (the partitions section may have
    # left the projection split 4 ways, which a 1-partition daemon refuses).
    await _reset_projection(dsn)
    await harness.spawn(eventstore_cli("project", "--until-caught-up", "--url", dsn))
    async with EventStore.open(
        dsn, settings=StoreSettings(pool_size=writers + 2)
    ) as store:
        thread = await store.threads.create(title="lag")
        message = await store.messages.create(
            thread_id=thread.id, role="user", content="lag"
        )
        graph = await store.graphs.create(name="lag-graph", version=1, definition={})
        daemon = await asyncio.create_subprocess_exec(
            *eventstore_cli("project", "--url", dsn, "--poll-interval", "0.5"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.sleep(3.0)  # start-up, catch up with what is there
            load = harness.load_average()
            samples: list[tuple[float, int, int]] = []
            stop = asyncio.Event()
            watcher = asyncio.create_task(_watch(dsn, stop, samples))
            appended: list[tuple[UUID, int, float]] = []
            interval = writers / rate
            start = time.monotonic() + 0.1
            write = functools.partial(
                _lag_writer, store, message.id, graph.id, interval=interval
            )
            await asyncio.gather(
                *(
                    write(
                        index=w,
                        start=start + w * interval / writers,
                        until=start + seconds,
                        appended=appended,
                    )
                    for w in range(writers)
                )
            )
            finished = time.monotonic()
            await asyncio.sleep(5.0)
            stop.set()
            await watcher
        finally:
            if daemon.returncode is None:
                daemon.terminate()
            _, daemon_err = await asyncio.wait_for(daemon.communicate(), timeout=30)
            if daemon.returncode not in (0, -15):
                print(daemon_err.decode(errors="replace"), file=sys.stderr)
    async with connected(dsn) as connection:
        rows = await connection.fetch(
            "SELECT stream_id, version, transaction_id::text::bigint AS t, position "
            "FROM execution_events WHERE stream_id = ANY($1::uuid[])",
            list({stream for stream, _, _ in appended}),
        )
    where = {
        (r["stream_id"], r["version"]): (int(r["t"]), int(r["position"])) for r in rows
    }
    if daemon.returncode not in (0, -15):
        raise RuntimeError(f"the projector daemon failed ({daemon.returncode})")
    lags: list[float] = []
    for stream, version, returned in appended:
        key = where[(stream, version)]
        seen = next(
            (at for at, t, p in samples if (t, p) >= key and at >= returned - 1.0), None
        )
        if seen is not None:
            lags.append(max(0.0, seen - returned) * 1000)
    elapsed = max(returned for _, _, returned in appended) - start
    record = {
        "section": "lag",
        "target_rate": rate,
        "writers": writers,
        "events": len(appended),
        "achieved_rate": len(appended) / elapsed,
        "writers_finished_after": finished - start,
        **{
            f"lag_ms_p{round(q * 100)}": harness.percentile(lags, q)
            for q in (0.50, 0.95, 0.99)
        },
        "lag_ms_max": max(lags),
        "lag_ms_mean": statistics.fmean(lags),
        "never_passed": len(appended) - len(lags),
        "checkpoint_samples": len(samples),
        "load_before": load,
    }
    emit(record, args.json)


SECTIONS: Final = {
    "rebuild": section_rebuild,
    "partitions": section_partitions,
    "lag": section_lag,
}

# --- command line -------------------------------------------------------------------


def wait_for_exit(pid: int) -> None:
    """Block until the process `pid` is gone (another measurement's runner)."""
    while Path(f"/proc/{pid}").exists():
        time.sleep(1.0)


async def _main(args: argparse.Namespace) -> None:
    async with harness.throwaway_database(
        Server(args.dsn), "bench_proj_", keep=args.keep
    ) as dsn:
        events, streams = await make_log(
            dsn, args.events, args.writers, copy=args.copy_log
        )
        if args.after_pid is not None:
            await asyncio.to_thread(wait_for_exit, args.after_pid)
        log = {
            "section": "log",
            "database": harness.CURRENT_DATABASE.get(),
            "events": events,
            "executions": streams,
        }
        emit(log, args.json)
        for (
            name,
            section,
        ) in SECTIONS.items():  # in this order, whatever the order given
            if name in args.sections:
                await section(dsn, args, events, streams)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sections."""
    parser = harness.options("python -m bench.projection_scale", "", None, None)
    add = parser.add_argument
    add("--events", type=int, default=200_000)
    add("--rounds", type=int, default=3)
    add("--partition-rounds", type=int, default=2)
    add("--batch-size", type=int, default=DEFAULT_BATCH)
    add("--writers", type=int, default=32, help="log generation")
    add("--lag-rate", type=float, default=1000.0)
    add("--lag-writers", type=int, default=16)
    add("--lag-seconds", type=float, default=40.0)
    sections = list(SECTIONS)
    add("--sections", nargs="+", default=sections, choices=sections)
    add("--json", type=Path, default=None, help="append records here")
    add(
        "--copy-log",
        action="store_true",
        help="COPY bench/audit.py's log instead of appending projection_log's",
    )
    add(
        "--after-pid",
        type=int,
        help="after the log is ready, wait until this process has exited",
    )
    add("--keep", action="store_true", help="keep the database")
    add("--child-rebuild", metavar="DSN", default=None)
    args = parser.parse_args(argv)
    if args.child_rebuild is not None:
        asyncio.run(_child_rebuild(args.child_rebuild, args.batch_size))
    else:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
