"""The console over HTTP at a million runs (README, "Web console"), on PostgreSQL.

The log of bench/queries.py (`--executions` runs), projected; the console
run as `eventstore serve` in a process of its own, asked by httpx clients
over 127.0.0.1:

- `/api/executions` first page, status=failed and the busiest customer's
  label: `--requests` requests from `--clients` concurrent clients;
- the page `/executions/{id}` of a run with 200 events, one after another;
- the delay from an append's return to its event arriving on an open
  `/api/executions/{id}/stream`: `--events` progress events appended at
  `--rate` per second by a second store in this process.

.venv/bin/python -m bench.console                       # 1,000,000 runs
.venv/bin/python -m bench.console --executions 20000 --output /tmp/c.md
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx

from bench import harness, queries
from bench.harness import Environment, Server
from projections import Projector

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from eventstore import EventStore

RESULTS: Final = harness.REPOSITORY / "bench" / "CONSOLE_RESULTS.md"
TARGETS_MS: Final = {"list": 50.0, "run page": 100.0, "stream p99": 250.0}
RUN_EVENTS: Final = 200


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """The settings of one run (see --help)."""

    server: Server
    executions: int = 1_000_000
    requests: int = 200
    clients: int = 8
    page_requests: int = 50
    events: int = 1000
    rate: float = 100.0


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    events: int
    customer: str
    list_ms: list[float]
    page_ms: list[float]
    stream_ms: list[float]


@contextlib.asynccontextmanager
async def _console(dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `eventstore serve` over `dsn`, run as its own process, as users run it.

    Not a server in this process: sharing the client's event loop costs every
    request about 40 ms of idle waiting (measured), which no user meets.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = harness.eventstore_cli("serve", "--url", dsn, "--port", str(port))
    server = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    limits = httpx.Limits(max_connections=64)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=60, limits=limits
        ) as client:
            async with asyncio.timeout(60):
                while True:
                    if server.returncode is not None:
                        _, error = await server.communicate()
                        raise RuntimeError(error.decode())
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
            yield client
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), 30)


async def _timed_gets(
    client: httpx.AsyncClient, path: str, *, requests: int, clients: int
) -> list[float]:
    """Milliseconds of each GET, `clients` at a time."""
    times: list[float] = []
    left = iter(range(requests))

    async def one_client() -> None:
        for _ in left:
            started = time.perf_counter()
            response = await client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return times


async def _long_run(store: EventStore) -> str:
    """A running execution with RUN_EVENTS events."""
    thread = await store.threads.create(title="bench")
    message = await store.messages.create(thread_id=thread.id, role="user", content="q")
    graph = await store.graphs.create(name="bench-console", version="1", definition={})
    run = await store.executions.create(
        message_id=message.id, graph_id=graph.id, inputs={"q": 1}
    )
    await store.executions.start(run, worker_id="w")
    for step in range(RUN_EVENTS - 2):
        await store.executions.progress(
            run, step=f"s{step}", metrics={"prompt_tokens": step, "cost_usd": 0.001}
        )
    return str(run)


async def _stream_delays(
    client: httpx.AsyncClient, store: EventStore, run: str, config: Config
) -> list[float]:
    """Milliseconds from each append's return to its event on the open stream."""
    appended: dict[str, float] = {}
    arrived: dict[str, float] = {}
    opened = asyncio.Event()

    async def read() -> None:
        async with client.stream("GET", f"/api/executions/{run}/stream") as response:
            opened.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    arrived[event["data"].get("step", "")] = time.perf_counter()
                    if len(arrived) == config.events:
                        return

    reader = asyncio.create_task(read())
    await opened.wait()
    await asyncio.sleep(0.5)  # the server's follow is reading by now
    started = time.perf_counter()
    for n in range(config.events):
        step = f"live-{n}"
        await store.executions.progress(run, step=step)
        appended[step] = time.perf_counter()
        await asyncio.sleep(
            max(0.0, started + (n + 1) / config.rate - time.perf_counter())
        )
    async with asyncio.timeout(60):
        await reader
    return [(arrived[step] - at) * 1000 for step, at in appended.items()]


async def _measure(config: Config) -> Outcome:
    async with (
        harness.throwaway_database(config.server, "bench_console_") as dsn,
        harness.migrated_store(dsn, pool_size=4) as store,
    ):
        loaded = dataclasses.replace(
            queries.Config(config.server), executions=config.executions
        )
        events = await queries.load_log(store, dsn, loaded)
        await Projector(store).run_until_caught_up()
        await harness.execute(dsn, "VACUUM ANALYZE executions")
        customer, _ = await queries.busiest_customers(dsn)
        run = await _long_run(store)
        async with _console(dsn) as client:
            path = f"/api/executions?status=failed&label=customer:{customer}"
            await _timed_gets(client, path, requests=20, clients=config.clients)
            list_ms = await _timed_gets(
                client, path, requests=config.requests, clients=config.clients
            )
            page_ms = await _timed_gets(
                client, f"/executions/{run}", requests=config.page_requests, clients=1
            )
            stream_ms = await _stream_delays(client, store, run, config)
    return Outcome(events, customer, list_ms, page_ms, stream_ms)


TEMPLATE: Final = """\
# The console at {{ "{:,}".format(config.executions) }} runs

Generated by `{{ command }}` (bench/console.py); the figures below are measured, none are edited.

{{ machine }}
## Method

- The log of bench/queries.py ({{ outcome.events | num }} events), projected, then
  `VACUUM ANALYZE executions`; the console run as `eventstore serve` in a process
  of its own, asked by httpx from the benchmark's process over 127.0.0.1 (client,
  server and PostgreSQL share the cores).
- List: `GET /api/executions?status=failed&label=customer:{{ outcome.customer }}` (the busiest
  customer), {{ config.requests }} requests from {{ config.clients }} concurrent clients after 20 warm-up requests.
- Run page: `GET /executions/{id}` of a running execution with {{ run_events }} events
  (the timeline, its chain verified), {{ config.page_requests }} requests one after another.
- Stream: one open `GET /api/executions/{id}/stream`; {{ config.events | num }} progress events
  appended at {{ config.rate | num }}/s by the benchmark's own store; the delay runs from
  each append's return to its `data:` line arriving.

## Results

| what | target | p50 ms | p95 ms | p99 ms | met |
|---|---|---|---|---|---|
| list, first page, failed + one label | p95 < {{ targets["list"] | num }} ms | {{ p(outcome.list_ms, 0.5) | num(1) }} | {{ p(outcome.list_ms, 0.95) | num(1) }} | {{ p(outcome.list_ms, 0.99) | num(1) }} | {{ "yes" if p(outcome.list_ms, 0.95) < targets["list"] else "**no**" }} |
| run page, {{ run_events }} events | p95 < {{ targets["run page"] | num }} ms | {{ p(outcome.page_ms, 0.5) | num(1) }} | {{ p(outcome.page_ms, 0.95) | num(1) }} | {{ p(outcome.page_ms, 0.99) | num(1) }} | {{ "yes" if p(outcome.page_ms, 0.95) < targets["run page"] else "**no**" }} |
| append to stream arrival | p99 < {{ targets["stream p99"] | num }} ms | {{ p(outcome.stream_ms, 0.5) | num(1) }} | {{ p(outcome.stream_ms, 0.95) | num(1) }} | {{ p(outcome.stream_ms, 0.99) | num(1) }} | {{ "yes" if p(outcome.stream_ms, 0.99) < targets["stream p99"] else "**no**" }} |

{{ notes }}"""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write its report."""
    defaults = Config(Server())
    parser = harness.options(
        "python -m bench.console",
        __doc__ or "",
        defaults,
        f"report file (default {RESULTS.relative_to(harness.REPOSITORY)})",
        executions="runs to generate (default 1,000,000)",
        requests="list requests (default 200)",
        clients="concurrent list clients (default 8)",
        page_requests="run page requests (default 50)",
        events="events appended while the stream is open (default 1,000)",
        rate="events appended per second (default 100)",
    )
    args = parser.parse_args(argv)
    config = harness.configured(
        dataclasses.replace(defaults, server=Server(args.dsn)), args
    )
    environment = Environment(config.server)
    outcome = asyncio.run(_measure(config))
    environment.finish()
    output = args.output or RESULTS
    text = harness.report(
        TEMPLATE,
        config=config,
        command="python -m bench.console " + " ".join(argv or sys.argv[1:]),
        machine=environment.lines(),
        outcome=outcome,
        targets=TARGETS_MS,
        run_events=RUN_EVENTS,
        p=harness.percentile,
        notes=harness.notes(output),
    )
    Path(output).write_text(text, encoding="utf-8")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
