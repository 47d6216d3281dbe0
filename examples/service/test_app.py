"""The example service's own tests: the store's pytest plugin and httpx, nothing else.

`eventstore_url` (a fresh migrated database per test, SQLite or, with
EVENTSTORE_TEST_POSTGRES_URL set, PostgreSQL) and `project` come from the
plugin the package installs; there is no conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import TYPE_CHECKING, Any, Final

import httpx

from eventstore import EventStore
from eventstore.testing import project
from examples.service.app import create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WITHIN: Final = 30  # seconds: a deadline, never an expected duration


@contextlib.asynccontextmanager
async def service(url: str, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    app = create_app(url, **options)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://service") as client,
    ):
        yield client


async def _ask(
    client: httpx.AsyncClient, content: str, **body: Any
) -> tuple[str, dict[str, Any]]:
    thread = (await client.post("/threads")).json()
    answer = await client.post(
        f"/threads/{thread['id']}/messages", json={"content": content, **body}
    )
    assert answer.status_code == 202, answer.text
    accepted: dict[str, Any] = answer.json()
    return thread["id"], accepted


async def _follow(client: httpx.AsyncClient, run: str) -> list[str]:
    """The event types the server-sent events stream sends until the run ends."""
    async with (
        asyncio.timeout(WITHIN),
        client.stream("GET", f"/executions/{run}/events") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        return [
            json.loads(line.removeprefix("data: "))["type"]
            async for line in response.aiter_lines()
            if line.startswith("data: ")
        ]


async def test_a_message_starts_a_run_whose_events_stream_until_it_ends(
    eventstore_url: str,
) -> None:
    async with service(eventstore_url) as client:
        _, accepted = await _ask(client, "why was I charged twice?")
        run = accepted["execution_id"]
        assert await _follow(client, run) == [
            "ExecutionCreated",
            "ExecutionStarted",
            "ExecutionProgressed",
            "ExecutionProgressed",
            "ExecutionProgressed",
            "ExecutionCompleted",
        ]
        state = (await client.get(f"/executions/{run}")).json()
        assert state["status"] == "completed"
        assert state["metrics"] == {"prompt_tokens": 600, "completion_tokens": 120}


async def test_a_retried_request_is_the_same_message_and_run(
    eventstore_url: str,
) -> None:
    async with service(eventstore_url) as client:
        thread = (await client.post("/threads")).json()
        body = {"content": "hello", "id": str(uuid.uuid4())}
        first, again = [
            (await client.post(f"/threads/{thread['id']}/messages", json=body)).json()
            for _ in range(2)
        ]
        assert again == first
        conflicting = await client.post(
            f"/threads/{thread['id']}/messages", json={**body, "content": "other"}
        )
        assert conflicting.status_code == 409
        assert conflicting.json()["error"] == "ReferenceConflict"
        await _follow(client, first["execution_id"])


async def test_a_failing_crew_and_a_cancelled_one(eventstore_url: str) -> None:
    async with service(eventstore_url, step_seconds=0.2) as client:
        _, failing = await _ask(client, "please fail")
        _, stopped = await _ask(client, "a long question")
        cancel = await client.post(f"/executions/{stopped['execution_id']}/cancel")
        assert cancel.status_code == 200, cancel.text
        assert (await _follow(client, failing["execution_id"]))[-1] == "ExecutionFailed"
        assert (await _follow(client, stopped["execution_id"]))[-1] == (
            "ExecutionCancelled"
        )
        again = await client.post(f"/executions/{stopped['execution_id']}/cancel")
        assert again.status_code == 409
        assert again.json()["error"] == "InvalidTransition"


async def test_the_list_reads_the_projection_run_in_process(
    eventstore_url: str,
) -> None:
    async with service(eventstore_url) as client:
        _, acme = await _ask(client, "q", labels={"customer": "acme"})
        await _ask(client, "q", labels={"customer": "globex"})
        await _follow(client, acme["execution_id"])
        async with asyncio.timeout(WITHIN):
            while True:  # the projector folds in the background
                page = (await client.get("/executions?label=customer=acme")).json()
                if [item["status"] for item in page["items"]] == ["completed"]:
                    break
                await asyncio.sleep(0.02)
        assert page["items"][0]["id"] == acme["execution_id"]


async def test_with_an_external_projector_the_list_waits_for_it(
    eventstore_url: str,
) -> None:
    async with service(eventstore_url, projector="external") as client:
        _, accepted = await _ask(client, "q", labels={"customer": "acme"})
        await _follow(client, accepted["execution_id"])
        assert (await client.get("/executions")).json()["items"] == []
        # What `eventstore project` would do in its own process.
        async with EventStore.open(eventstore_url) as store:
            assert await project(store) == 6
        listed = (await client.get("/executions?status=completed")).json()
        assert [item["id"] for item in listed["items"]] == [accepted["execution_id"]]


async def test_the_stores_errors_are_http_errors(eventstore_url: str) -> None:
    async with service(eventstore_url) as client:
        missing = await client.get(f"/executions/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert missing.json()["error"] == "ExecutionNotFound"
        no_thread = await client.post(
            f"/threads/{uuid.uuid4()}/messages", json={"content": "x"}
        )
        assert no_thread.status_code == 404
        bad_label = await client.post(
            f"/threads/{(await client.post('/threads')).json()['id']}/messages",
            json={"content": "x", "labels": {"Not A Key": "v"}},
        )
        assert bad_label.status_code == 422
        assert bad_label.json()["error"] == "ValidationError"
