"""audit, stats, project, rebuild and demo from the command line (ARCHITECTURE §9)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from eventstore import EventStore, ExecutionStatus
from projections.queries import ExecutionsView
from tests.cli.runner import run_cli
from tests.helpers import References, eventually, execution_in, make_references

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path


def assert_one_line_error(
    done: subprocess.CompletedProcess[str], code: int, text: str
) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert text in done.stderr
    assert "Traceback" not in done.stderr


async def test_audit_timeline_json_and_as_of(
    store: EventStore, refs: References, url: str
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.PENDING)
    (created,) = await store.executions.history(execution_id)
    # "As of the creation's time" must exclude the start: wait until the
    # clock (SQLite's has millisecond steps) has moved past that time.
    await eventually(
        lambda: datetime.now(UTC) > created.recorded_at + timedelta(milliseconds=2),
        "the clock moved on",
    )
    await store.executions.start(execution_id, worker_id="worker-1")
    await store.executions.progress(
        execution_id, step="plan", metrics={"prompt_tokens": 5}
    )
    await store.executions.complete(
        execution_id, result="ok", metadata={"actor": "worker-1"}
    )
    history = await store.executions.history(execution_id)
    assert history[0].recorded_at < history[1].recorded_at

    table = run_cli("audit", str(execution_id), "--url", url)
    assert table.returncode == 0, table.stderr
    for text in (
        "ExecutionCreated",
        "ExecutionStarted",
        "step plan",
        "worker-1",
        "completed",
    ):
        assert text in table.stdout

    full = json.loads(
        run_cli("audit", str(execution_id), "--url", url, "--json").stdout
    )
    assert [e["type"] for e in full["events"]] == [e.type for e in history]
    assert full["state"]["status"] == "completed"
    assert full["state"]["metrics"] == {"prompt_tokens": 5}

    at_position = json.loads(
        run_cli(
            "audit",
            str(execution_id),
            "--url",
            url,
            "--json",
            "--as-of",
            str(history[1].position),
        ).stdout
    )
    assert [e["version"] for e in at_position["events"]] == [1, 2]
    assert at_position["state"]["status"] == "running"
    assert at_position["state"]["version"] == 2

    at_time = json.loads(
        run_cli(
            "audit", str(execution_id), "--url", url, "--json",
            "--as-of", history[0].recorded_at.isoformat(),
        ).stdout
    )  # fmt: skip
    assert at_time["state"]["status"] == "pending"
    before = json.loads(
        run_cli(
            "audit", str(execution_id), "--url", url, "--json",
            "--as-of", (history[0].recorded_at - timedelta(seconds=1)).isoformat(),
        ).stdout
    )  # fmt: skip
    assert before["state"] is None
    assert before["events"] == []


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["audit", "not-a-uuid"], 2, "UUID"),
        (["audit", str(uuid.uuid4())], 2, "not found"),
        (["audit", "{id}", "--as-of", "yesterday"], 2, "ISO 8601"),
        (["audit", "{id}", "--as-of", "2026-01-01T00:00:00"], 2, "offset"),
    ],
)
async def test_audit_user_errors(
    store: EventStore, refs: References, url: str, args: list[str], code: int, text: str
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.PENDING)
    done = run_cli(*(a.replace("{id}", str(execution_id)) for a in args), "--url", url)
    assert_one_line_error(done, code, text)


@pytest.mark.parametrize(
    "command",
    [
        ["audit", str(uuid.uuid4())],
        ["stats"],
        ["project", "--until-caught-up"],
        ["rebuild"],
    ],
)
def test_an_unreachable_database_is_exit_1(command: list[str]) -> None:
    done = run_cli(*command, "--url", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert_one_line_error(done, 1, "cannot reach the database")


def test_an_unmigrated_database_is_exit_1(empty_sqlite_url: str) -> None:
    done = run_cli("stats", "--url", empty_sqlite_url)
    assert_one_line_error(done, 1, "eventstore migrate")


async def test_project_twice_then_stats_and_rebuild(
    store: EventStore, refs: References, url: str
) -> None:
    for status in ExecutionStatus:
        await execution_in(store, refs, status)
    events = await store.log.count_events()
    first = run_cli("project", "--until-caught-up", "--url", url)
    assert first.returncode == 0, first.stderr
    assert f"projected {events} events" in first.stdout
    rows = (await ExecutionsView(store).list()).items
    second = run_cli("project", "--until-caught-up", "--url", url)
    assert "projected 0 events" in second.stdout
    assert (await ExecutionsView(store).list()).items == rows

    (stats,) = json.loads(run_cli("stats", "--url", url, "--json").stdout)
    assert stats["counts"] == {s.value: 1 for s in ExecutionStatus}
    assert stats["group"] == {"graph": refs.graph.name}
    assert run_cli("stats", "--url", url).returncode == 0

    rebuilt = run_cli("rebuild", "--url", url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"rebuilt executions from {events} events" in rebuilt.stdout
    assert (await ExecutionsView(store).list()).items == rows


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_the_daemon_stops_on_a_signal(url: str, signum: int) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "eventstore.cli", "project", "--url", url,
            "--poll-interval", "0.05",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            view = ExecutionsView(store)

            async def projected(version: int) -> bool:
                try:
                    return (await view.get(execution_id)).version == version
                except LookupError:
                    return False

            # It projects what is there, then follows what comes.
            await eventually(lambda: projected(2), "projected")
            await store.executions.complete(execution_id, result=1)
            await eventually(lambda: projected(3), "followed")
            daemon.send_signal(signum)
            _, err = await asyncio.wait_for(daemon.communicate(), timeout=30)
        finally:
            if daemon.returncode is None:
                daemon.kill()
    assert daemon.returncode == 0, err
    assert b"Traceback" not in err
    assert b"projector stopped" in err


def test_demo_on_the_embedded_default(tmp_path: Path) -> None:
    done = run_cli("demo", "--executions", "40", "--workers", "4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "eventstore.db").is_file()
    for text in (
        "runs by graph, label:model",
        "completed",
        "durations by graph, label:model",
        "gpt-large",
        "p99",
        "eventstore list --label customer=acme",
    ):
        assert text in done.stdout


def _graph_totals(directory: Path) -> list[tuple[Any, ...]]:
    done = run_cli("stats", "--group-by", "graph", "--json", cwd=directory)
    assert done.returncode == 0, done.stderr
    return [
        (
            row["group"]["graph"],
            row["runs"],
            tuple(sorted(row["counts"].items())),
            row["prompt_tokens"],
            row["completion_tokens"],
            row["cost_usd"],
        )
        for row in json.loads(done.stdout)
    ]


def test_a_demo_seed_gives_the_same_totals_and_a_second_demo_reuses_the_graphs(
    tmp_path: Path,
) -> None:
    once, twice = tmp_path / "once", tmp_path / "twice"
    for directory in (once, twice):
        directory.mkdir()
        done = run_cli(
            "demo", "--executions", "40", "--workers", "4", "--seed", "3", cwd=directory
        )
        assert done.returncode == 0, done.stderr
    # Same seed, other scheduling: the same runs, fates, tokens and cost.
    first = _graph_totals(once)
    assert _graph_totals(twice) == first
    # The same demo again on one store: its graphs once each, runs doubled.
    done = run_cli(
        "demo", "--executions", "40", "--workers", "4", "--seed", "3", cwd=twice
    )
    assert done.returncode == 0, done.stderr
    again = _graph_totals(twice)
    assert [row[0] for row in again] == [row[0] for row in first]
    assert [row[1] for row in again] == [2 * row[1] for row in first]
