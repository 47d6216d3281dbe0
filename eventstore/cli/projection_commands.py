"""Commands that run projections: the projector (daemon or catch-up).

`rebuild` lives in rebuild_command.py.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer
from rich.table import Table

from eventstore import EventStore
from eventstore.cli.app import (
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stdout,
)
from eventstore.cli.display import safe
from eventstore.cli.log_output import LogFormat, LogLevel, configure_logging
from eventstore.cli.metrics_server import serve_metrics
from projections.batches import BatchSizes
from projections.gc_tuning import gc_for_batches
from projections.projector import Projector
from projections.slot_status import ProjectionStatus, projection_status
from projections.start_by_rebuild import REBUILD_AT_START

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(project)


def project(
    url: UrlOption = None,
    *,
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="exit once the log is folded")
    ] = False,
    partitions: Annotated[
        int,
        typer.Option(
            min=1,
            max=1024,
            help="split the work by hash(stream_id) mod N; processes started with "
            "the same N share the partitions and take over those of a dead one",
        ),
    ] = 1,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            max=100_000,
            help="events per batch; one behind the log reads up to "
            f"{BatchSizes.GROWTH} times as many (at most {BatchSizes.LIMIT:,}) "
            "until it catches up",
        ),
    ] = 1000,
    rebuild_at_start: Annotated[
        int,
        typer.Option(
            min=0,
            help="catch a projection at the start of a log whose head is at this "
            "position or beyond up by a rebuild (PostgreSQL; about three times "
            "as fast), then go on in batches; 0: always in batches",
        ),
    ] = REBUILD_AT_START,
    poll_interval: Annotated[
        # At most an hour: `inf` would leave an idle daemon asleep for good.
        float,
        typer.Option(min=0.01, max=3600, help="seconds between polls when idle"),
    ] = 0.5,
    status: Annotated[
        bool,
        typer.Option(
            "--status",
            help="show each projection and partition: checkpoint, lag, leader, "
            "and the oldest transaction holding the log back; run nothing",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="serve Prometheus metrics on http://HOST:PORT/metrics (otel extra)",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="the address --metrics-port binds")
    ] = "127.0.0.1",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            help="the daemon's log lines on stderr: text, or one JSON object each"
        ),
    ] = LogFormat.TEXT,
    log_level: Annotated[
        LogLevel, typer.Option(help="the lowest level logged")
    ] = LogLevel.INFO,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Run the projector: fold the log into the executions table.

    Without --until-caught-up it runs as a daemon until SIGINT or SIGTERM,
    finishing the batch in hand. Several daemons on one database share the
    work: one leads each projection (or partition), the others stand by.
    A poison event stops the projector (exit 1) with its position and id,
    after every event before it is applied; fix the code and start it
    again: it resumes at that event. Transient database errors (a lost
    connection, a deadlock) are retried with backoff.
    """
    if status:
        _print_status(run(lambda: _status(url), debug=debug), json_output=json_output)
        return

    configure_logging(log_format, log_level)

    async def command() -> int:
        if metrics_port is not None:
            serve_metrics(metrics_host, metrics_port)
        async with EventStore.open(url) as store, gc_for_batches():
            projector = Projector(
                store,
                batch_size=batch_size,
                poll_interval=poll_interval,
                partitions=partitions,
                rebuild_at_start=rebuild_at_start or None,
            )
            if until_caught_up:
                return await projector.run_until_caught_up()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            logger.info("projecting %s; stop with Ctrl-C or SIGTERM", store.url)
            if metrics_port is not None:
                logger.info(
                    "metrics on http://%s:%d/metrics", metrics_host, metrics_port
                )
            await projector.run(stop)
            return 0

    applied = run(command, debug=debug)
    if until_caught_up:
        stdout.print(f"projected {applied} events; the executions table is caught up")
    else:
        logger.info("projector stopped")


async def _status(url: str | None) -> ProjectionStatus:
    async with EventStore.open(url) as store:
        return await projection_status(store)


def _print_status(result: ProjectionStatus, *, json_output: bool) -> None:
    if json_output:
        print_json(result.model_dump(mode="json"))
        return
    table = Table(title=f"projections (log head at position {result.head_position})")
    for column in (
        "projection",
        "partition",
        "checkpoint",
        "lag events",
        "lag s",
        "leader",
        "state",
    ):
        table.add_column(
            column,
            justify="left" if column in ("projection", "leader", "state") else "right",
        )
    for slot in result.slots:
        # A leader's name is its application_name: any client can set it.
        table.add_row(
            safe(slot.projection),
            f"{slot.partition}/{slot.partitions}",
            str(slot.checkpoint_position),
            str(slot.lag_events),
            f"{slot.lag_seconds:.1f}",
            safe(f"{slot.leader} (pid {slot.leader_pid})" if slot.leader else "none"),
            safe(
                f"waiting for rebuild by {slot.rebuild_holder} "
                f"(pid {slot.rebuild_holder_pid})"
                if slot.state == "waiting for rebuild"
                else slot.state
            ),
        )
    stdout.print(table)
    horizon = result.horizon
    if horizon is None:
        stdout.print("no transaction holds the log back")
    else:
        # PostgreSQL hides the start of another role's transaction from a
        # role without pg_read_all_stats: its age is unknown, not zero.
        age = (
            "age unknown (another role's session)"
            if horizon.age_seconds is None
            else f"{horizon.age_seconds:.1f} s old"
        )
        stdout.print(
            safe(
                f"oldest transaction in flight: pid {horizon.pid} on "
                f"{horizon.database}, {horizon.state or 'state unknown'}, {age}"
            )
        )
