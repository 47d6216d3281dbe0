"""The console over HTTP at a million runs (README, "Web console"), on PostgreSQL.

`eventstore serve` over bench/queries.py's log, asked by httpx: the list of the
busiest customer's failed runs, a run's page, and the delay from an append's
return to its event on an open stream (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Final

import httpx

from bench import harness, queries
from bench.harness import Environment, Server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from eventstore import EventStore

RESULTS: Final = harness.REPOSITORY / "bench" / "CONSOLE_RESULTS.md"
RUN_EVENTS: Final = 200
# what, the percentile its target is for, and the target in ms
TARGETS: Final = (
    ("list, first page, failed + one label", 0.95, 50.0),
    (f"run page, {RUN_EVENTS} events", 0.95, 100.0),
    ("append to stream arrival", 0.99, 250.0),
)
TEMPLATE_NAMES: Final = {"p": harness.percentile, "run_events": RUN_EVENTS}


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    server: Server
    executions: int = 1_000_000
    requests: int = 200
    clients: int = 8
    page_requests: int = 50
    events: int = 1000
    rate: float = 100.0


@contextlib.asynccontextmanager
async def _console(dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `eventstore serve` over `dsn` in its own process, as users run
    it (sharing the client's event loop cost every request ~40 ms of waiting)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = harness.eventstore_cli("serve", "--url", dsn, "--port", str(port))
    server = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base, limits = f"http://127.0.0.1:{port}", httpx.Limits(max_connections=64)
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=60, limits=limits
        ) as client:
            async with asyncio.timeout(60):
                while server.returncode is None:
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/healthz")).is_success:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError((await server.communicate())[1].decode())
            yield client
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), 30)


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
        metrics = {"prompt_tokens": step, "cost_usd": 0.001}
        await store.executions.progress(run, step=f"s{step}", metrics=metrics)
    return str(run)


async def _stream_delays(
    client: httpx.AsyncClient, store: EventStore, run: str, config: Config
) -> list[float]:
    """Milliseconds from each append's return to its event on the open stream."""
    appended: list[float] = []
    arrived: list[float] = []

    async def append() -> None:
        for n in range(config.events):
            await store.executions.progress(run, step=f"live-{n}")
            appended.append(time.perf_counter())
            pause = appended[0] + (n + 1) / config.rate - appended[-1]
            await asyncio.sleep(max(0.0, pause))

    async with client.stream("GET", f"/api/executions/{run}/stream") as response:
        await asyncio.sleep(0.5)  # the server's follow is reading by now
        appending = asyncio.create_task(append())
        async with asyncio.timeout(config.events / config.rate + 60):
            async for line in response.aiter_lines():
                if line.startswith("data:") and '"live-' in line:
                    arrived.append(time.perf_counter())
                    if len(arrived) == config.events:
                        break
        await appending
    return [(at - sent) * 1000 for at, sent in zip(arrived, appended, strict=True)]


async def _measure(config: Config) -> dict[str, Any]:
    """The report's figures: the log, the customer, the milliseconds of TARGETS."""
    log = queries.projected_log(config.server, config.executions, "bench_console_")
    async with log as (dsn, store, events, _):
        customer = (await harness.fetchval(dsn, queries.CUSTOMERS_SQL))[0]
        run = await _long_run(store)
        async with _console(dsn) as client:
            path = f"/api/executions?status=failed&label=customer:{customer}"
            get = functools.partial(client.get, path)
            clients = config.clients
            await queries.latencies(get, 20, clients)  # warm-up
            list_ms, lists = await queries.latencies(get, config.requests, clients)
            page = functools.partial(client.get, f"/executions/{run}")
            page_ms, pages = await queries.latencies(page, config.page_requests)
            stream_ms = await _stream_delays(client, store, run, config)
    if failed := [r for r in (*lists, *pages) if not r.is_success]:
        raise RuntimeError(f"{len(failed)} requests failed, the first: {failed[0]}")
    results = list(zip(TARGETS, (list_ms, page_ms, stream_ms), strict=True))
    return {"events": events, "customer": customer, "results": results}


TEMPLATE: Final = """\
# The console at {{ config.executions|num }} runs

## Method

- The log of bench/queries.py ({{ events|num }} events), projected, then `VACUUM ANALYZE executions`; the console run as `eventstore serve` in a process of its own, asked by httpx from the benchmark's process over 127.0.0.1 (client, server and PostgreSQL share the cores).
- List: `GET /api/executions?status=failed&label=customer:{{ customer }}` (the busiest customer), {{ config.requests }} requests from {{ config.clients }} concurrent clients after 20 warm-up requests.
- Run page: `GET /executions/{id}` of a running execution with {{ run_events }} events (the timeline, its chain verified), {{ config.page_requests }} requests one after another.
- Stream: one open `GET /api/executions/{id}/stream`; {{ config.events|num }} progress events appended at {{ config.rate|num }}/s by the benchmark's own store; the delay runs from each append's return to its `data:` line arriving.

## Results

| what | target | p50 ms | p95 ms | p99 ms | met |
|---|---|---|---|---|---|
{% for (what, fraction, target), ms in results %}
| {{ what }} | p{{ (fraction * 100)|int }} < {{ target|num }} ms | {{ p(ms, 0.5)|num(1) }} | {{ p(ms, 0.95)|num(1) }} | {{ p(ms, 0.99)|num(1) }} | {{ "yes" if p(ms, fraction) < target else "**no**" }} |
{% endfor %}"""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write its report."""
    parser = harness.options(
        "python -m bench.console",
        __doc__ or "",
        Config(Server()),
        f"report file (default {RESULTS.relative_to(harness.REPOSITORY)})",
        executions="runs to generate (default 1,000,000)",
        events="events appended while the stream is open (default 1,000)",
    )
    args = parser.parse_args(argv)
    config = harness.configured(Config(Server(args.dsn)), args)
    environment, found = Environment(config.server), asyncio.run(_measure(config))
    text = harness.report(TEMPLATE, config=config, **found, **TEMPLATE_NAMES)
    command = " ".join([parser.prog, *(sys.argv[1:] if argv is None else argv)])
    queries.write_report(args.output or RESULTS, environment, text, command)


if __name__ == "__main__":
    main()
