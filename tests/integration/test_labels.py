"""Labels (README, "The lifecycle"): set on create and by `label`, in every status, refused when bad."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from eventstore import (
    EventStore,
    ExecutionNotFound,
    ExecutionStatus,
    NewEvent,
    ValidationError,
    fold_events,
)
from eventstore.audit import render_timeline
from projections import ExecutionsView
from projections.executions import ExecutionsProjection
from projections.rebuild import run_rebuild
from projections.verify import verify_executions
from tests.helpers import (
    References,
    assert_projection_equals_fold,
    count_events,
    execution_in,
    project_everything,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID


async def _create(store: EventStore, refs: References, **labels: Any) -> UUID:
    return await store.executions.create(
        message_id=refs.message.id, graph_id=refs.graph.id, **labels
    )


async def test_labels_are_set_on_create_and_changed_in_every_status(
    store: EventStore, refs: References
) -> None:
    run = await _create(store, refs, labels={"customer": "42", "env": "prod"})
    assert (await store.executions.get(run)).labels == {"customer": "42", "env": "prod"}

    state = await store.executions.label(run, set={"reviewed": "yes"}, remove=["env"])
    assert state.labels == {"customer": "42", "reviewed": "yes"}
    assert state.status is ExecutionStatus.PENDING
    await store.executions.start(run, worker_id="w")
    await store.executions.complete(run, result=1)
    state = await store.executions.label(
        run, set={"customer": "43"}, remove=["absent-key"]
    )
    assert state.status is ExecutionStatus.COMPLETED
    assert state.labels == {"customer": "43", "reviewed": "yes"}
    assert await store.executions.get(run) == state
    history = await store.executions.history(run)
    assert [event.type for event in history].count("ExecutionLabelled") == 2

    await project_everything(store)
    assert (await ExecutionsView(store).get(run)).labels == state.labels
    await assert_projection_equals_fold(store)


async def test_a_run_created_without_labels_has_none_and_its_event_has_no_labels_key(
    store: EventStore, refs: References
) -> None:
    run = await _create(store, refs)
    assert (await store.executions.get(run)).labels == {}
    [created] = await store.executions.history(run)
    # The event earlier releases wrote: an idempotent create retried across
    # an upgrade still matches it.
    assert "labels" not in created.data


@pytest.mark.parametrize(
    "labels",
    [
        {"Customer": "42"},  # upper case
        {"-env": "prod"},  # must start with a letter or digit
        {"": "x"},
        {"k" * 64: "x"},
        {"a b": "x"},
        {"env": 5},
        {"env": None},
        {"env": "x" * 257},
        {"env": "nul\x00"},
        {"env": "\ud800"},
        {f"key{i}": "v" for i in range(33)},
        ["env"],
    ],
)
async def test_bad_labels_on_create_are_refused_and_nothing_is_written(
    store: EventStore, refs: References, labels: Any
) -> None:
    before = await count_events(store)
    with pytest.raises(ValidationError, match="labels"):
        await _create(store, refs, labels=labels)
    assert await count_events(store) == before


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"set": {"Bad": "x"}}, "label key"),
        ({"set": {"env": "x" * 257}}, "256"),
        ({"remove": ["Bad"]}, "label key"),
        ({"remove": "env"}, "remove"),
        ({}, "nothing to set or remove"),
        ({"set": {"env": "a"}, "remove": ["env"]}, "both set and removed"),
        ({"set": {f"more{i}": "v" for i in range(31)}}, "at most 32 labels"),
    ],
)
async def test_bad_label_changes_are_refused_and_nothing_is_written(
    store: EventStore, refs: References, change: dict[str, Any], reason: str
) -> None:
    run = await _create(store, refs, labels={"a": "1", "b": "2"})
    before = await count_events(store)
    with pytest.raises(ValidationError, match=reason):
        await store.executions.label(run, **change)
    assert await count_events(store) == before
    assert (await store.executions.get(run)).labels == {"a": "1", "b": "2"}


async def test_thirty_two_labels_are_allowed(
    store: EventStore, refs: References
) -> None:
    run = await _create(store, refs, labels={f"key{i}": "v" for i in range(31)})
    state = await store.executions.label(run, set={"last": "v"})
    assert len(state.labels) == 32
    # Replacing one keeps the count.
    state = await store.executions.label(run, set={"other": "v"}, remove=["last"])
    assert len(state.labels) == 32


async def test_labelling_an_unknown_execution_is_not_found(store: EventStore) -> None:
    with pytest.raises(ExecutionNotFound):
        await store.executions.label(
            "00000000-0000-4000-8000-000000000000", set={"a": "b"}
        )


async def test_the_log_takes_a_label_after_the_end_but_no_label_out_of_a_stream(
    store: EventStore, refs: References
) -> None:
    """The database's lifecycle guard lets ExecutionLabelled through in any status."""
    run = await execution_in(store, refs, ExecutionStatus.FAILED)
    labelled = NewEvent(type="ExecutionLabelled", data={"set": {"triaged": "yes"}})
    await store.append(run, [labelled], expected_version=2)
    assert (await store.executions.get(run)).labels == {"triaged": "yes"}
    with pytest.raises(ExecutionNotFound):  # a stream must start with ExecutionCreated
        await store.append(
            "00000000-0000-4000-8000-000000000001",
            [NewEvent(type="ExecutionLabelled", data={"set": {"a": "b"}})],
            expected_version=0,
        )


async def test_a_retry_keeps_the_labels(store: EventStore, refs: References) -> None:
    run = await _create(store, refs, labels={"customer": "42"})
    await store.executions.fail(run, error={"type": "E", "message": "m"})
    retried = await store.executions.retry(run)
    assert (await store.executions.get(retried)).labels == {"customer": "42"}


async def test_the_first_step_time_is_the_first_progress(
    store: EventStore, refs: References
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    assert (await store.executions.get(run)).first_step_at is None
    first = await store.executions.progress(run, step="plan")
    second = await store.executions.progress(run, step="write")
    history = await store.executions.history(run)
    assert first.first_step_at == history[2].occurred_at
    assert second.first_step_at == first.first_step_at
    await project_everything(store)
    assert (await ExecutionsView(store).get(run)).first_step_at == first.first_step_at


async def test_the_rebuild_verify_and_the_timeline_know_labels(
    store: EventStore, refs: References
) -> None:
    run = await _create(store, refs, labels={"customer": "42"})
    await store.executions.label(
        run, set={"env": "prod", "note": "<script>x</script>"}, remove=["customer"]
    )
    # A transaction open elsewhere on the server (another test's) may hold
    # the gap-safe horizon back: the rebuild folds only what lies below it.
    await wait_for_horizon(store)
    await run_rebuild(store, ExecutionsProjection(store.projection_context))
    assert (await ExecutionsView(store).get(run)).labels == {
        "env": "prod",
        "note": "<script>x</script>",
    }
    assert await verify_executions(store) == []

    events = await store.executions.history(run)
    page = render_timeline(events, fold_events(events), execution_id=run)
    assert "labelled" in page
    assert "env=prod" in page
    assert "<script>x" not in page  # label text is escaped
    assert "&lt;script&gt;x" in page


async def test_an_archived_run_keeps_its_labels(
    store: EventStore, refs: References, tmp_path: Path
) -> None:
    run = await _create(store, refs, labels={"customer": "42"})
    await store.executions.fail(run, error={"type": "E", "message": "m"})
    await store.executions.label(run, set={"triaged": "yes"})
    await project_everything(store)
    archive = tmp_path / "archive"
    archive.mkdir()
    result = await store.audit.archive(
        finished_before=datetime.now(UTC) + timedelta(seconds=1), directory=archive
    )
    assert result is not None
    with pytest.raises(ExecutionNotFound):
        await ExecutionsView(store).get(run)
    _, timeline = await store.audit.archived_timeline(result.data_path, run)
    assert timeline.state is not None
    assert timeline.state.labels == {"customer": "42", "triaged": "yes"}
