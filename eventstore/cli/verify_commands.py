"""`eventstore verify` (chains, anchors, projection) and `eventstore anchor`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from eventstore import EventStore, errors
from eventstore.audit import (
    VERIFY_PROCESSES_LIMIT,
    AnchorReport,
    LogReport,
    VerifyRun,
)
from eventstore.cli.app import (
    EXIT_PROBLEM,
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stderr,
    stdout,
    warning_line,
)
from eventstore.cli.display import safe
from projections.gc_tuning import gc_for_batches
from projections.verify import (
    Backlog,
    Divergence,
    verify_backlog,
    verify_executions,
)

KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        envvar="EVENTSTORE_ANCHOR_KEY_FILE",
        help="a file holding the operator's HMAC key for chain anchors "
        "(never stored in the database)",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(verify)
    app.command()(anchor)


def read_key(path: Path | None) -> bytes | None:
    """The HMAC key from its file (surrounding whitespace dropped).

    Raises:
        ValidationError: the file cannot be read or holds no key.
    """
    if path is None:
        return None
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise errors.ValidationError(
            f"cannot read the key file {path}: {exc.strerror or exc}"
        ) from exc
    if not key:
        raise errors.ValidationError(f"the key file {path} is empty")
    return key


def anchor(
    url: UrlOption = None,
    *,
    key_file: KeyFileOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Record a chain anchor: a digest over every execution stream's head.

    Run it periodically (cron, a systemd timer); `eventstore verify` then
    proves that no stream was removed, cut short or slipped in before the
    last anchor. With --key-file the anchor is signed (HMAC-SHA256).
    """

    async def command() -> dict[str, Any]:
        key = read_key(key_file)
        async with EventStore.open(url) as store:
            recorded = await store.audit.anchor(key=key)
        return {
            "position": recorded.position,
            "streams": recorded.streams,
            "changed": len(recorded.heads),
            "removed": len(recorded.removed),
            "digest": recorded.digest,
            "signed": recorded.hmac is not None,
        }

    result = run(command, debug=debug)
    if json_output:
        print_json(result)
        return
    stdout.print(
        f"anchored {result['streams']} streams at position {result['position']} "
        f"({result['changed']} changed, {result['removed']} archived since the "
        f"previous anchor), digest {result['digest']}"
        + (", signed" if result["signed"] else "")
    )


def verify(
    url: UrlOption = None,
    *,
    log_only: Annotated[
        bool,
        typer.Option("--log-only", help="check the hash chains, not the projection"),
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            min=1,
            max=VERIFY_PROCESSES_LIMIT,
            help="processes that recompute the chains, each for a share of the "
            "streams [default: one per core once the log holds 300,000 events]",
            show_default=False,
        ),
    ] = None,
    key_file: KeyFileOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Verify the hash chains, the chain anchors and the executions table.

    Exits 1 and names the first problems when anything does not verify.
    """

    async def command() -> tuple[dict[str, Any], list[str]]:
        key = read_key(key_file)
        started_at = datetime.now(UTC)
        # Verify (and its fold of the projection) allocates per event, as a
        # rebuild does: the same collector settings.
        async with EventStore.open(url) as store, gc_for_batches():
            with Progress(
                TextColumn("verifying the log: {task.completed:,} events"),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
            ) as progress:
                task = progress.add_task("verify", total=None)
                log = await store.audit.verify_log(
                    processes=processes,
                    on_batch=lambda n: progress.update(task, completed=n),
                )
            anchors = await store.audit.verify_anchors(key=key)
            divergences = [] if log_only else await verify_executions(store)
            backlog = None if log_only else await verify_backlog(store)
            result = _result(log, anchors, divergences, backlog)
            problems = problem_lines(result)
            await _record(
                store,
                VerifyRun(
                    started_at=started_at,
                    finished_at=datetime.now(UTC),
                    events=log.events,
                    streams=log.streams,
                    projection_checked=not log_only,
                    problems=len(problems),
                    first_problem=problems[0] if problems else None,
                ),
            )
        return result, problems

    result, problems = run(command, debug=debug)
    if json_output:
        print_json({**result, "ok": not problems})
    else:
        stdout.print(f"read {result['events']} events in {result['streams']} streams")
        for line in problems:
            stdout.print(safe(line), soft_wrap=True)  # one line each, however long
        if not problems:
            checked = "hash chains" + (
                "" if log_only else " and the executions projection"
            )
            if result["anchors"]:
                checked_signatures = result["anchor_signatures_checked"]
                unchecked = result["anchors_signed"] - checked_signatures
                stdout.print(
                    f"ok: {result['anchors']} chain anchors hold"
                    + (
                        f" ({checked_signatures} signatures checked)"
                        if checked_signatures
                        else ""
                    )
                    + (
                        f"; {unchecked} signed anchors' signatures not checked "
                        "(give --key-file)"
                        if unchecked > 0
                        else ""
                    )
                )
            stdout.print(f"ok: {checked} verified")
            if result["projection_behind"]:
                stdout.print(
                    f"the executions projection is {result['projection_behind']} "
                    "events behind the log; a projector leads it"
                )
    if problems:
        raise typer.Exit(EXIT_PROBLEM)


def problem_lines(result: dict[str, Any]) -> list[str]:
    """Every problem `verify` found, one line each, chains first."""
    lines = [
        f"broken chain: execution {p['stream_id']} at position {p['position']}: "
        f"{p['reason']}"
        for p in result["chain_problems"]
    ]
    lines += [
        f"anchor mismatch: stream {p['stream_id']}"
        + (f" at position {p['position']}" if p["position"] else "")
        + f": {p['reason']}"
        for p in result["anchor_problems"]
    ]
    lines += [
        f"projection diverges: execution {d['execution_id']}: {d['reason']}"
        for d in result["projection_divergences"]
    ]
    lines += [
        f"projection stuck: position {u['position']} (event {u['event_id']}, "
        f"execution {u['execution_id']}) cannot be applied: {u['reason']}"
        for u in result["projection_unapplicable"]
    ]
    for stalled in result["projection_stalled"]:
        slot = (
            f" partition {stalled['partition']}/{stalled['partitions']}"
            if stalled["partitions"] > 1
            else ""
        )
        lines.append(
            f"projection stalled: executions{slot} is behind the log by "
            f"{stalled['behind']} events with nobody projecting"
        )
    return lines


async def _record(store: EventStore, run: VerifyRun) -> None:
    """Keep the result for the console; a role that may not write still verifies."""
    try:
        await store.audit.record_verify_run(run)
    except errors.DatabaseError as exc:
        warning_line(f"the result was not recorded for the console: {exc}")


def _result(
    log: LogReport,
    anchors: AnchorReport,
    divergences: list[Divergence],
    backlog: Backlog | None,
) -> dict[str, Any]:
    """What `verify` found, as `--json` prints it (without "ok")."""
    return {
        "events": log.events,
        "streams": log.streams,
        "chain_problems": [
            {
                "stream_id": str(p.stream_id),
                "position": p.position,
                "reason": p.reason,
            }
            for p in log.problems
        ],
        "anchors": anchors.anchors,
        "anchors_signed": anchors.signed,
        "anchor_signatures_checked": anchors.signatures_checked,
        "anchor_problems": [
            {
                "stream_id": str(p.stream_id),
                "position": p.position,
                "reason": p.reason,
            }
            for p in anchors.problems
        ],
        "projection_checked": backlog is not None,
        "projection_divergences": [
            {"execution_id": str(d.execution_id), "reason": d.reason}
            for d in divergences
        ],
        "projection_behind": backlog.behind if backlog else 0,
        "projection_unapplicable": [
            {
                "position": u.position,
                "event_id": str(u.event_id),
                "execution_id": str(u.execution_id),
                "reason": u.reason,
            }
            for u in (backlog.unapplicable if backlog else [])
        ],
        "projection_stalled": [
            {
                "partition": s.partition,
                "partitions": s.partitions,
                "behind": s.behind,
            }
            for s in (backlog.stalled if backlog else [])
        ],
    }
