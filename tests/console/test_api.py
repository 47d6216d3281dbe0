"""The console's JSON API (README, "Web console") over HTTP, on both backends."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest

from eventstore import ExecutionStatus
from eventstore.events.system_payloads import CHAIN_ANCHORS_STREAM
from tests.conftest import SERVER, TEST_PREFIX
from tests.console.server import serving
from tests.helpers import execution_in, project_everything

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from eventstore import EventStore
    from tests.helpers import References


@pytest.fixture
async def client(url: str, store: EventStore) -> AsyncIterator[httpx.AsyncClient]:
    del store  # migrated first
    async with serving(url) as opened:
        yield opened


async def _labelled_runs(store: EventStore, refs: References) -> dict[str, Any]:
    """Runs of two customers in several statuses, projected."""
    acme = [
        await execution_in(store, refs, status)
        for status in (
            ExecutionStatus.FAILED,
            ExecutionStatus.FAILED,
            ExecutionStatus.COMPLETED,
        )
    ]
    for run in acme:
        await store.executions.label(run, set={"customer": "acme"})
    other = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await store.executions.label(other, set={"customer": "globex"})
    await project_everything(store)
    return {"acme": acme, "other": other}


async def test_executions_filter_by_status_and_label_and_page(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    runs = await _labelled_runs(store, refs)
    response = await client.get(
        "/api/executions",
        params=[("status", "failed"), ("label", "customer:acme"), ("limit", "1")],
    )
    assert response.status_code == 200
    first = response.json()
    assert [item["status"] for item in first["items"]] == ["failed"]
    assert first["next_cursor"] is not None
    second = (
        await client.get(
            "/api/executions",
            params=[
                ("status", "failed"),
                ("label", "customer:acme"),
                ("limit", "1"),
                ("cursor", first["next_cursor"]),
            ],
        )
    ).json()
    assert second["next_cursor"] is None
    found = {item["id"] for item in first["items"] + second["items"]}
    assert found == {str(run) for run in runs["acme"][:2]}
    everything = (await client.get("/api/executions")).json()
    assert len(everything["items"]) == 4
    oldest = (await client.get("/api/executions", params={"order": "oldest"})).json()
    assert [i["id"] for i in oldest["items"]] == [i["id"] for i in everything["items"]][
        ::-1
    ]


async def test_an_empty_parameter_is_no_filter(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    """What an HTML form sends for the fields left empty."""
    await _labelled_runs(store, refs)
    params = {"status": "", "label": "", "graph": "", "since": "", "until": ""}
    response = await client.get("/api/executions", params=params)
    assert response.status_code == 200
    assert len(response.json()["items"]) == 4


async def test_counts_by_status(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    await _labelled_runs(store, refs)
    counts = (
        await client.get("/api/executions/counts", params={"label": "customer:acme"})
    ).json()
    assert counts == {
        "pending": 0,
        "running": 0,
        "completed": 1,
        "failed": 2,
        "cancelled": 0,
    }


@pytest.mark.parametrize(
    "params",
    [
        {"status": "exploded"},
        {"label": "customer"},
        {"since": "yesterday"},
        {"until": "2026-13-01T00:00:00Z"},
        {"limit": "0"},
        {"limit": "many"},
        {"order": "sideways"},
        {"cursor": "not-a-cursor"},
        {"colour": "red"},
        [("graph", "a"), ("graph", "b")],
    ],
    ids=lambda p: str(p)[:30],
)
async def test_a_bad_filter_is_400_with_a_json_error(
    client: httpx.AsyncClient, params: Any
) -> None:
    response = await client.get("/api/executions", params=params)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert response.json()["error"]


async def test_one_run_its_state_and_events(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await store.executions.progress(run, step="plan", metrics={"prompt_tokens": 5})
    # Read from the log: no projector ran.
    state = (await client.get(f"/api/executions/{run}")).json()
    assert state["id"] == str(run)
    assert state["status"] == "running"
    assert state["steps_completed"] == 1
    by_prefix = await client.get(f"/api/executions/{str(run)[:8]}")
    assert by_prefix.json() == state
    events = (await client.get(f"/api/executions/{run}/events")).json()
    recorded = await store.executions.history(run)
    assert [e["version"] for e in events] == [e.version for e in recorded]
    assert [e["position"] for e in events] == [e.position for e in recorded]
    assert [e["type"] for e in events] == [
        "ExecutionCreated",
        "ExecutionStarted",
        "ExecutionProgressed",
    ]
    assert events[-1]["data"]["metrics"] == {"prompt_tokens": 5}
    assert [e["hash"] for e in events] == [e.hash.hex() for e in recorded]
    for event in events:
        assert {"occurred_at", "recorded_at", "data", "event_id"} <= set(event)


@pytest.mark.parametrize(
    "path",
    [
        "/api/executions/0b6f4f2e-0000-4000-8000-000000000000",
        "/api/executions/0b6f4f2e-0000-4000-8000-000000000000/events",
        "/api/executions/0b6f4f2e-0000-4000-8000-000000000000/stream",
        "/api/executions/not-an-id",
        "/api/executions/ffffffff",
    ],
)
async def test_an_unknown_run_is_404_with_a_json_error(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("route", ["", "/events", "/stream"])
async def test_a_system_stream_is_no_run(
    store: EventStore, client: httpx.AsyncClient, route: str
) -> None:
    # The store's own records (anchors, archive receipts) have ids too.
    await store.audit.anchor()
    path = f"/api/executions/{CHAIN_ANCHORS_STREAM}{route}"
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == f"execution {CHAIN_ANCHORS_STREAM} not found"
    page = await client.get(f"/executions/{CHAIN_ANCHORS_STREAM}")
    assert page.status_code == 404
    assert "ChainAnchor" not in page.text


async def _stream_lines(
    client: httpx.AsyncClient, path: str, lines: asyncio.Queue[str | None]
) -> None:
    async with client.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                await lines.put(line.removeprefix("data:").strip())
    await lines.put(None)  # the server ended the stream


async def _next(lines: asyncio.Queue[str | None]) -> dict[str, Any] | None:
    async with asyncio.timeout(10):
        line = await lines.get()
    return None if line is None else json.loads(line)


async def test_the_stream_sends_new_events_and_ends_after_the_terminal_one(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    reader = asyncio.create_task(
        _stream_lines(client, f"/api/executions/{run}/stream", lines)
    )
    # The stream starts from now: keep appending until the first one arrives.
    first = None
    step = 0
    while first is None:
        step += 1
        await store.executions.progress(run, step=f"step-{step}")
        try:
            async with asyncio.timeout(0.5):
                first = await _next(lines)
        except TimeoutError:
            continue
    assert first["type"] == "ExecutionProgressed"
    version = first["version"]
    await store.executions.complete(run, result={"ok": True})
    seen = [first]
    while (event := await _next(lines)) is not None:
        seen.append(event)
    await reader
    assert seen[-1]["type"] == "ExecutionCompleted"
    assert [e["version"] for e in seen] == list(range(version, seen[-1]["version"] + 1))


async def test_the_stream_from_a_version_replays_then_ends(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    await _stream_lines(client, f"/api/executions/{run}/stream?from_version=2", lines)
    seen = []
    while (event := await _next(lines)) is not None:
        seen.append(event)
    assert [e["version"] for e in seen] == [2, 3]
    assert seen[-1]["type"] == "ExecutionCompleted"


@pytest.mark.parametrize("bad", ["-1", "x", "2147483648", "99999999999"])
async def test_a_bad_from_version_is_400_before_the_stream_starts(
    store: EventStore, refs: References, client: httpx.AsyncClient, bad: str
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    response = await client.get(
        f"/api/executions/{run}/stream", params={"from_version": bad}
    )
    assert response.status_code == 400
    assert "from_version" in response.json()["error"]


async def test_stats_group_by_repeated(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    await _labelled_runs(store, refs)
    rows = (
        await client.get(
            "/api/stats",
            params=[("group_by", "label:customer"), ("group_by", "status")],
        )
    ).json()
    groups = {
        (r["group"]["label:customer"], r["group"]["status"]): r["runs"] for r in rows
    }
    assert groups == {
        ("acme", "completed"): 1,
        ("acme", "failed"): 2,
        ("globex", "running"): 1,
    }
    bad = await client.get("/api/stats", params={"group_by": "colour"})
    assert bad.status_code == 400


async def test_projections_and_healthz(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    await _labelled_runs(store, refs)
    status = (await client.get("/api/projections")).json()
    assert status["slots"][0]["projection"] == "executions"
    assert status["slots"][0]["lag_events"] == 0
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


@pytest.mark.postgres
async def test_healthz_is_503_when_the_database_is_gone(pg_template: str) -> None:
    name = await SERVER.create(TEST_PREFIX, template=pg_template)
    try:
        async with serving(SERVER.url_of(name)) as client:
            assert (await client.get("/healthz")).status_code == 200
            await SERVER.drop(name)  # ends the console's sessions too
            response = await client.get("/healthz")
            assert response.status_code == 503
            assert response.json()["status"] == "unavailable"
            listing = await client.get("/api/executions")
            assert listing.status_code == 503
            assert listing.json()["error"]
    finally:
        await SERVER.drop(name)
