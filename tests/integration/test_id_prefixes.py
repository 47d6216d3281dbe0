"""An execution named by the first 8 or more hex digits of its id, as tables print it."""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING

import pytest

from eventstore import ExecutionCreated, NewEvent, ValidationError
from tests.cli.runner import run_cli

if TYPE_CHECKING:
    from eventstore import EventStore
    from tests.helpers import References


async def _created_at(
    store: EventStore, refs: References, identifier: str
) -> uuid.UUID:
    """An execution whose id is chosen (two may then share a prefix)."""
    stream_id = uuid.UUID(identifier)
    await store.append(
        stream_id,
        [
            NewEvent.of(
                ExecutionCreated(
                    message_id=refs.message.id,
                    graph_id=refs.graph.id,
                    thread_id=refs.thread.id,
                )
            )
        ],
        expected_version=0,
    )
    return stream_id


async def test_a_unique_prefix_names_its_execution(
    store: EventStore, refs: References
) -> None:
    one = await _created_at(store, refs, "8fc36c07-1111-4000-8000-000000000001")
    await _created_at(store, refs, "8fc36c08-1111-4000-8000-000000000001")
    for text in ("8fc36c07", "8FC36C07", "8fc36c07-11", "8fc36c0711114", str(one)):
        assert await store.expand_id(text) == one, text


async def test_an_ambiguous_prefix_names_two_and_asks_for_more(
    store: EventStore, refs: References
) -> None:
    await _created_at(store, refs, "8fc36c07-1111-4000-8000-000000000001")
    await _created_at(store, refs, "8fc36c07-2222-4000-8000-000000000001")
    with pytest.raises(
        ValidationError, match=r"ambiguous .*8fc36c07-1111.*8fc36c07-2222"
    ):
        await store.expand_id("8fc36c07")
    assert (await store.expand_id("8fc36c072")) == uuid.UUID(
        "8fc36c07-2222-4000-8000-000000000001"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8fc36c0", "a UUID, or its first 8 or more hex digits"),
        ("8fc36c0z", "a UUID, or its first 8 or more hex digits"),
        ("", "a UUID, or its first 8 or more hex digits"),
        ("deadbeef", "no execution id starts with 'deadbeef'"),
    ],
)
async def test_what_names_no_execution_is_refused(
    store: EventStore, refs: References, text: str, message: str
) -> None:
    await _created_at(store, refs, "8fc36c07-1111-4000-8000-000000000001")
    with pytest.raises(ValidationError, match=re.escape(message)):
        await store.expand_id(text)


async def test_a_whole_id_is_taken_as_it_is(store: EventStore) -> None:
    # Not looked up: an archived run's id names it in an archive file.
    unknown = uuid.uuid4()
    assert await store.expand_id(str(unknown)) == unknown


async def test_audit_takes_a_prefix(
    url: str, store: EventStore, refs: References
) -> None:
    one = await _created_at(store, refs, "8fc36c07-1111-4000-8000-000000000001")
    await _created_at(store, refs, "8fc36c07-2222-4000-8000-000000000001")

    found = run_cli("audit", "--url", url, "8fc36c071", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["execution_id"] == str(one)

    ambiguous = run_cli("audit", "--url", url, "8fc36c07")
    assert ambiguous.returncode == 2
    assert ambiguous.stderr.count("\n") == 1, ambiguous.stderr
    assert "ambiguous execution id prefix '8fc36c07'" in ambiguous.stderr
    unknown = run_cli("audit", "--url", url, "deadbeef")
    assert unknown.returncode == 2
    assert "no execution id starts with 'deadbeef'" in unknown.stderr
