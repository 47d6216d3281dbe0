"""The console's token, its cookie, and that nothing in it writes (README, "Web console")."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest

from eventstore import ExecutionStatus
from tests.console.server import serving
from tests.helpers import count_events, execution_in

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from eventstore import EventStore
    from tests.helpers import References

TOKEN = "s3cret-console-token"  # noqa: S105 - the test's own


@pytest.fixture
async def guarded(url: str, store: EventStore) -> AsyncIterator[httpx.AsyncClient]:
    del store  # migrated first
    async with serving(url, token=TOKEN) as client:
        yield client


async def test_without_the_token_every_route_but_healthz_is_401(
    guarded: httpx.AsyncClient,
) -> None:
    for path in ("/", "/api/executions", "/api/stats", "/api/projections"):
        response = await guarded.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "error" in response.json()
    assert (await guarded.get("/healthz")).status_code == 200
    wrong = await guarded.get(
        "/api/executions", headers={"Authorization": "Bearer not-it"}
    )
    assert wrong.status_code == 401
    right = await guarded.get(
        "/api/executions", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert right.status_code == 200


async def test_the_token_in_the_address_once_sets_a_strict_http_only_cookie(
    guarded: httpx.AsyncClient,
) -> None:
    opened = await guarded.get(
        "/api/executions", params=[("status", "failed"), ("token", TOKEN)]
    )
    assert opened.status_code == 303
    assert opened.headers["location"] == "/api/executions?status=failed"
    cookie = opened.headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie  # a digest of it
    followed = await guarded.get("/api/executions?status=failed")  # the cookie jar
    assert followed.status_code == 200
    guarded.cookies.clear()
    assert (await guarded.get("/api/executions")).status_code == 401
    bad = await guarded.get("/api/executions", params={"token": "not-it"})
    assert bad.status_code == 401
    guarded.cookies.set("eventstore_console", "0" * 64)
    assert (await guarded.get("/api/executions")).status_code == 401


async def test_nothing_in_the_console_writes(
    store: EventStore, refs: References, url: str
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    before = await count_events(store)
    async with serving(url) as client:
        for path in (
            "/api/executions",
            f"/api/executions/{run}",
            f"/api/executions/{run}/events",
            f"/api/executions/{run}/stream",
            "/api/stats",
            "/api/projections",
        ):
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                response = await client.request(method, path, json={"status": "failed"})
                assert response.status_code == 405, (method, path)
    assert await count_events(store) == before
    assert (await store.executions.get(run)).status is ExecutionStatus.RUNNING


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _serve_command(*args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "eventstore.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EVENTSTORE_CONSOLE_TOKEN": ""},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.1", "console.example"])  # noqa: S104
def test_a_non_loopback_address_without_a_token_is_refused(
    host: str, url: str, store: EventStore
) -> None:
    del store
    with _serve_command("--url", url, "--host", host) as process:
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr.strip().startswith("error: refusing to serve on")
    assert len(stderr.strip().splitlines()) == 1


async def test_a_non_loopback_console_answers_401_without_its_token(
    url: str, store: EventStore
) -> None:
    del store
    port = _free_port()
    everywhere = "0.0.0.0"  # noqa: S104 - what the test is about
    with _serve_command(
        "--url", url, "--host", everywhere, "--port", str(port), "--token", TOKEN
    ) as process:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            async with asyncio.timeout(60):
                while True:
                    assert process.poll() is None, process.communicate()
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
            assert (await client.get("/api/executions")).status_code == 401
            opened = await client.get("/api/executions", params={"token": TOKEN})
            assert opened.status_code == 303
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert TOKEN not in stderr  # the access log masks ?token=
    assert "token=***" in stderr


def test_serve_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    with _serve_command("--url", url) as process:
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "not migrated" in stderr
    assert "run `eventstore migrate`" in stderr
    assert len(stderr.strip().splitlines()) == 1
