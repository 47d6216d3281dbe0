"""The console's pages over HTTP, on both backends: content, filters, escaping."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import ExecutionStatus
from eventstore.audit import VerifyRun
from tests.console.server import serving
from tests.helpers import execution_in, project_everything, tamper

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from eventstore import EventStore
    from tests.helpers import References

HOSTILE = "<script>alert('x')</script>"
ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"


@pytest.fixture
async def client(url: str, store: EventStore) -> AsyncIterator[httpx.AsyncClient]:
    del store  # migrated first
    async with serving(url) as opened:
        yield opened


def _assert_escaped(html: str) -> None:
    assert HOSTILE not in html
    assert ESCAPED in html


async def test_the_list_filters_by_label_and_escapes_labels(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    marked = await execution_in(store, refs, ExecutionStatus.FAILED)
    await store.executions.label(marked, set={"customer": HOSTILE})
    other = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await project_everything(store)

    everything = (await client.get("/")).text
    assert str(marked)[:8] in everything
    assert str(other)[:8] in everything
    _assert_escaped(everything)
    only = await client.get("/", params={"label": f"customer:{HOSTILE}"})
    assert only.status_code == 200
    assert str(marked)[:8] in only.text
    assert str(other)[:8] not in only.text
    counts = dict(re.findall(r'data-status="(\w+)">(\d+)<', everything))
    assert counts == {
        "pending": "0",
        "running": "0",
        "completed": "1",
        "failed": "1",
        "cancelled": "0",
    }


async def test_the_list_pages_by_its_next_link(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    runs = [await execution_in(store, refs, ExecutionStatus.PENDING) for _ in range(3)]
    await project_everything(store)
    seen: list[str] = []
    path: str | None = "/?limit=2"
    while path is not None:
        html = (await client.get(path)).text
        seen += re.findall(r'href="/executions/([0-9a-f-]{36})"', html)
        found = re.search(r'href="(\?[^"]+)" rel="next"', html)
        path = None if found is None else "/" + found.group(1).replace("&amp;", "&")
    assert sorted(seen) == sorted(str(run) for run in runs)


async def test_a_bad_filter_is_a_400_page_and_an_unknown_run_a_404_page(
    client: httpx.AsyncClient,
) -> None:
    bad = await client.get("/", params={"since": "yesterday"})
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("text/html")
    assert "invalid since" in bad.text
    missing = await client.get("/executions/0b6f4f2e-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")


async def test_the_run_page_shows_the_state_inputs_graph_and_chain(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    run = await store.executions.create(
        message_id=refs.message.id,
        graph_id=refs.graph.id,
        inputs={"question": HOSTILE},
        labels={"customer": "acme"},
    )
    await store.executions.start(run, worker_id="worker-7")
    await store.executions.progress(run, step="plan", metrics={"prompt_tokens": 12})
    html = (await client.get(f"/executions/{run}")).text
    _assert_escaped(html)
    assert "running" in html
    assert "customer=acme" in html
    assert f"{refs.graph.name} v{refs.graph.version}" in html
    assert 'class="chain-ok">verified' in html
    assert "worker-7" in html
    assert "EventSource" in html  # live while running
    await store.executions.fail(run, error={"type": "Boom", "message": HOSTILE})
    finished = (await client.get(f"/executions/{run}")).text
    _assert_escaped(finished)
    assert "EventSource" not in finished  # nothing more will come


async def test_a_changed_run_is_shown_as_failing_its_chain(
    store: EventStore, refs: References, url: str, client: httpx.AsyncClient
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    started = (await store.executions.history(run))[1]
    await tamper(
        url,
        'UPDATE execution_events SET data = \'{"worker_id": "mallory"}\' '
        f"WHERE position = {started.position}",
    )
    page = await client.get(f"/executions/{run}")
    assert page.status_code == 200
    assert "does not verify" in page.text
    assert "the hash of version 2 does not match" in page.text
    assert 'class="chain-broken">does not verify' in page.text
    assert "mallory" in page.text  # the log as it is now, named as altered


async def test_the_graphs_page_draws_a_series_per_graph(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    hostile = await store.graphs.create(name=HOSTILE, version="1", definition={})
    run = await store.executions.create(
        message_id=refs.message.id, graph_id=hostile.id, inputs={}
    )
    await store.executions.start(run, worker_id="w")
    await store.executions.complete(run, result={})
    await project_everything(store)
    html = (await client.get("/graphs", params={"since": "24h"})).text
    _assert_escaped(html)
    charts = re.findall(r"<figure class=\"chart\">(.*?)</figure>", html, re.DOTALL)
    assert len(charts) == 5
    for chart in charts:
        assert len(re.findall(r'<polyline class="series"', chart)) == 2
    assert 'id="graph-stats"' in html


async def test_the_system_page_shows_the_slots(
    store: EventStore, refs: References, client: httpx.AsyncClient
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await project_everything(store)
    html = (await client.get("/system")).text
    assert re.search(r"<td>executions</td>", html)
    assert "Read horizon" in html


async def test_the_system_page_shows_the_last_verify(
    store: EventStore, client: httpx.AsyncClient
) -> None:
    assert "No verification recorded" in (await client.get("/system")).text
    now = datetime.now(UTC)
    await store.audit.record_verify_run(
        VerifyRun(now, now, 1200, 34, projection_checked=True, problems=0)
    )
    verified = (await client.get("/system")).text
    assert '<span class="chain-ok">verified</span>' in verified
    assert "1,200 events in 34 streams" in verified
    assert "and the executions projection" in verified
    await store.audit.record_verify_run(
        VerifyRun(
            now,
            now + timedelta(seconds=2),
            1300,
            35,
            projection_checked=False,
            problems=2,
            first_problem=f"projection diverges: {HOSTILE}",
        )
    )
    broken = (await client.get("/system")).text
    assert '<span class="chain-broken">2 problems</span>' in broken
    assert "(--log-only)" in broken
    assert "(2.0 s)" in broken
    _assert_escaped(broken)


async def test_the_system_page_shows_the_rest_when_verify_runs_cannot_be_read(
    store: EventStore, client: httpx.AsyncClient
) -> None:
    async with store.backend.begin_write() as connection:  # a role without the grant
        await connection.execute(sa.text("DROP TABLE verify_runs"))
    response = await client.get("/system")
    assert response.status_code == 200
    assert "Cannot read what the last verify found" in response.text
    assert "Projection slots" in response.text
