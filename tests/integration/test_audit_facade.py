"""`store.audit`: a program does everything the audit commands do, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from eventstore import ExecutionNotFound, ExecutionStatus
from eventstore.audit import AsOf
from tests.helpers import execution_in, project_everything, wait_for_horizon

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from tests.helpers import References

KEY = b"an operator's key"


async def test_timelines_statuses_and_chains_now_and_as_of_a_moment(
    store: EventStore, refs: References
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    audit = store.audit

    now = await audit.timeline(run, stored=True)
    assert now.state is not None
    assert now.state.status is ExecutionStatus.COMPLETED
    types = [event.type for event in now.events]
    assert types[0] == "ExecutionCreated"
    assert types[-1] == "ExecutionCompleted"
    assert [e.event_id for e in now.stored] == [e.event_id for e in now.events]

    started = next(e for e in now.events if e.type == "ExecutionStarted")
    then = await audit.timeline(run, as_of=AsOf(position=started.position))
    assert then.state is not None
    assert then.state.status is ExecutionStatus.RUNNING
    assert [e.version for e in then.events] == [1, 2]
    assert then.stored == []  # not asked for

    assert await audit.verify_stream(run) == now.events[-1].hash
    await wait_for_horizon(store)
    statuses = await audit.statuses_as_of()
    assert [(s.execution_id, s.status) for s in statuses] == [
        (run, ExecutionStatus.COMPLETED)
    ]
    before = await audit.statuses_as_of(AsOf(position=started.position))
    assert [s.status for s in before] == [ExecutionStatus.RUNNING]

    report = await audit.verify_log()
    assert report.ok
    assert report.events == len(now.events)


async def test_an_unknown_stream_has_no_timeline(store: EventStore) -> None:
    with pytest.raises(ExecutionNotFound):
        await store.audit.timeline("0b6f4f2e-0000-4000-8000-000000000000")


async def test_anchor_archive_and_replay_from_the_archive(
    store: EventStore, refs: References, tmp_path: Path
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.FAILED)
    audit = store.audit
    await wait_for_horizon(store)
    anchor = await audit.anchor(key=KEY)
    assert anchor.streams == 1
    await project_everything(store)

    result = await audit.archive(
        finished_before=datetime.now(UTC) + timedelta(days=1), directory=tmp_path
    )
    assert result is not None
    assert [stream.stream_id for stream in result.manifest.streams] == [run]
    with pytest.raises(ExecutionNotFound):
        await audit.timeline(run)

    verified = await audit.verify_archive(result.data_path)
    assert [stream.stream_id for stream in verified.manifest.streams] == [run]
    _, timeline = await audit.archived_timeline(result.data_path, run)
    assert timeline.state is not None
    assert timeline.state.status is ExecutionStatus.FAILED
    assert [e.event_id for e in timeline.stored] == [
        e.event_id for e in timeline.events
    ]

    anchors = await audit.verify_anchors(key=KEY)
    assert anchors.ok
