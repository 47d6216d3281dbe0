"""The daemon's log lines: `--log-format json` gives one JSON object per stderr line."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import pytest

from eventstore import ExecutionStatus, reap
from tests.helpers import eventually, execution_in, make_references

if TYPE_CHECKING:
    from eventstore import EventStore

WITHIN: Final = 30  # seconds: a deadline, never an expected duration


@pytest.mark.slow
@pytest.mark.sqlite
async def test_json_log_lines_from_the_daemon(sqlite_url: str) -> None:
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventstore.cli", "project", "--url", sqlite_url,
        "--poll-interval", "0.05", "--log-format", "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert daemon.stderr is not None
        first = await asyncio.wait_for(daemon.stderr.readline(), WITHIN)
        daemon.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(daemon.communicate(), WITHIN)
    finally:
        if daemon.returncode is None:
            daemon.kill()
    del rest
    assert daemon.returncode == 0
    record = json.loads(first)
    assert record["message"].startswith("projecting sqlite")
    assert record["level"] == "INFO"
    assert record["logger"].startswith("eventstore.")
    assert "time" in record


async def test_the_reaper_logs_each_run_it_fails_with_its_id(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    refs = await make_references(store)
    stale = await execution_in(store, refs, ExecutionStatus.PENDING)
    failed: list[object] = []

    async def reaped() -> bool:
        report = await reap(store, pending_after=timedelta(microseconds=1))
        failed.extend(report.expired_pending)
        return bool(failed)

    with caplog.at_level(logging.INFO, logger="eventstore"):
        await eventually(reaped, "reaped the pending run", within=WITHIN)
    assert failed == [stale]
    (record,) = [r for r in caplog.records if r.name == "eventstore.reaper"]
    assert record.execution_id == str(stale)  # type: ignore[attr-defined]
    assert str(stale) in record.getMessage()
