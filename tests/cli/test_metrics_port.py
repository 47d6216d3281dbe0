"""`eventstore project --metrics-port`: the projector's metrics, scraped as Prometheus would."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import urllib.request
from typing import Final

import pytest

from eventstore import EventStore, ExecutionStatus
from tests.cli.runner import run_cli
from tests.helpers import eventually, execution_in, make_references

WITHIN: Final = 30  # seconds: a deadline, never an expected duration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5
        ) as got:
            return str(got.read().decode())
    except OSError:
        return ""  # not serving yet


@pytest.mark.slow
async def test_the_daemon_serves_its_lag_per_slot(url: str) -> None:
    port = _free_port()
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        await execution_in(store, refs, ExecutionStatus.COMPLETED)
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "eventstore.cli", "project", "--url", url,
            "--poll-interval", "0.05", "--metrics-port", str(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            caught_up = 'eventstore_projector_lag_events{otel_scope_name="eventstore"'

            async def served() -> bool:
                text = await asyncio.to_thread(_scrape, port)
                return any(
                    line.startswith(caught_up)
                    and 'projection_slot="executions"' in line
                    and line.endswith(" 0.0")
                    for line in text.splitlines()
                )

            await eventually(
                served, "served a lag of 0 for the executions slot", within=WITHIN
            )
            text = await asyncio.to_thread(_scrape, port)
            assert "# TYPE eventstore_projector_lag_seconds gauge" in text
            daemon.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(daemon.communicate(), timeout=WITHIN)
        finally:
            if daemon.returncode is None:
                daemon.kill()
    assert daemon.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{port}/metrics".encode() in err


@pytest.mark.sqlite
def test_a_port_in_use_is_one_line_and_exit_2(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("project", "--url", sqlite_url, "--metrics-port", str(port))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
