"""`verify` cut into runs of the log finds what one pass finds (both backends).

Each process of a parallel `verify` checks one run of the log; a stream
that began in an earlier run chains its first event in the run to its last
event before it. Whatever is altered, wherever the cuts fall, the runs
together must report the events, the streams and the first break of each
broken stream exactly as one pass over the whole log does.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from eventstore import EventStore, NewEvent
from eventstore.audit.archiving import archive_finished_before
from eventstore.audit.integrity import (
    MAX_PROBLEMS,
    LogReport,
    reads_see_what_committed_before,
    verify_log,
    verify_run,
)
from eventstore.audit.verify_processes import _merged
from eventstore.backends.rows import RawEventRow
from tests.helpers import project_everything, tamper, wait_for_horizon

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from uuid import UUID

    from eventstore import Checkpoint
    from eventstore.backends.base import Backend
    from eventstore.backends.rows import StreamEnd
    from tests.helpers import References

STREAMS = 7
EVENTS_PER_STREAM = 6


async def _interleaved_log(store: EventStore) -> list[UUID]:
    """Streams whose events interleave, so every stream crosses every cut."""
    streams = [uuid.uuid4() for _ in range(STREAMS)]
    for n in range(EVENTS_PER_STREAM):
        for stream in streams:
            event = NewEvent(type="Note", data={"n": n})
            await store.append(stream, [event], stream_type="note")
    await wait_for_horizon(store)
    return streams


async def _in_runs(backend: Backend, parts: int) -> LogReport:
    await reads_see_what_committed_before(backend)
    splits = await backend.log_splits(parts)
    assert len(splits) == parts - 1
    runs = zip([None, *splits], [*splits, None], strict=True)
    return _merged(
        [await verify_run(backend, after=after, until=until) for after, until in runs]
    )


def _found(
    report: LogReport,
) -> tuple[int, int, set[tuple[UUID | None, int | None, str]]]:
    return (
        report.events,
        report.streams,
        {(p.stream_id, p.position, p.reason) for p in report.problems},
    )


async def test_the_splits_cut_the_log_into_runs_of_nearly_equal_length(
    store: EventStore,
) -> None:
    assert await store.backend.log_splits(4) == []  # an empty log has no cuts
    await _interleaved_log(store)
    events = STREAMS * EVENTS_PER_STREAM
    for parts in (2, 3, 4, 7):
        splits = await store.backend.log_splits(parts)
        lengths = []
        positions: list[int] = []
        for after, until in zip([None, *splits], [*splits, None], strict=True):
            rows = [
                RawEventRow._make(row)
                for row in await store.backend.read_rows_as_stored(
                    after, limit=1000, until=until
                )
            ]
            lengths.append(len(rows))
            positions += [row.position for row in rows]
            if until is not None:
                assert rows[-1].checkpoint == until
        assert positions == list(range(1, events + 1)), parts  # each once, in order
        assert max(lengths) - min(lengths) <= 1, (parts, lengths)
    assert len(await store.backend.log_splits(events + 5)) == events - 1


async def test_runs_find_what_one_pass_finds_whatever_is_altered(
    store: EventStore, url: str
) -> None:
    streams = await _interleaved_log(store)
    backend = store.backend
    for parts in (2, 3, 5):
        assert _found(await _in_runs(backend, parts)) == (
            STREAMS * EVENTS_PER_STREAM,
            STREAMS,
            set(),
        )
    # The events at the cuts and right after them, then anywhere: each
    # alteration adds to the ones before it.
    cuts = [split.position for split in await backend.log_splits(3)]
    chosen = [*cuts, *(cut + 1 for cut in cuts)]
    rng = random.Random(7)
    chosen += rng.sample(range(1, STREAMS * EVENTS_PER_STREAM + 1), 6)
    changes = [
        "UPDATE execution_events SET data = '{\"n\": 99}' WHERE position = {p}",
        "UPDATE execution_events SET version = version + 100 WHERE position = {p}",
    ]
    for number, position in enumerate(chosen):
        change = changes[number % len(changes)].replace("{p}", str(position))
        await tamper(url, change)
        one = await verify_log(backend)
        assert not one.ok
        for parts in (2, 3, 5):
            merged = await _in_runs(backend, parts)
            assert _found(merged) == _found(one), (position, parts)
            # In the same order too: the log's.
            assert [p.stream_id for p in merged.problems] == [
                p.stream_id for p in one.problems
            ]
    assert {problem.stream_id for problem in one.problems} <= set(streams)


async def test_a_stream_archived_while_a_run_reads_it_is_no_break(
    store: EventStore, refs: References, tmp_path: Path, url: str
) -> None:
    """A run reads a stream's rows, then looks up its end before the cut; an
    archive that removed the stream in between leaves no end to find. That
    is the archive's doing (its tombstone says so), not a break; events
    removed before a cut without one still are."""
    executions = store.executions
    ids = [
        await executions.create(message_id=refs.message.id, graph_id=refs.graph.id)
        for _ in range(2)
    ]
    for execution_id in ids:
        await executions.start(execution_id, worker_id="w1")
    for execution_id in ids:
        await executions.complete(execution_id, result={"ok": True})
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    await project_everything(store)
    backend = store.backend
    await reads_see_what_committed_before(backend)
    (cut,) = await backend.log_splits(2)
    looked_up = backend.stream_ends
    archived: list[object] = []

    async def archive_first(
        stream_ids: Sequence[UUID], at: Checkpoint
    ) -> dict[UUID, StreamEnd]:
        if not archived:
            archived.append(await archive_finished_before(store, cutoff, tmp_path))
        return await looked_up(stream_ids, at)

    backend.stream_ends = archive_first  # type: ignore[method-assign]
    try:
        report = await verify_run(backend, after=cut)
    finally:
        backend.stream_ends = looked_up  # type: ignore[method-assign]
    assert archived[0] is not None  # the archive removed both streams meanwhile
    assert report.problems == []
    # The run's three rows, read before the archive, and its receipt after.
    assert report.events == 4

    # Without a tombstone, events gone from before a cut are a break.
    rest = [uuid.uuid4() for _ in range(2)]
    for n in range(2):
        for stream in rest:
            await store.append(
                stream, [NewEvent(type="Note", data={"n": n})], stream_type="note"
            )
    await wait_for_horizon(store)
    await reads_see_what_committed_before(backend)
    rows = map(RawEventRow._make, await backend.read_rows_as_stored(None, limit=1000))
    (first,) = [
        row for row in rows if row.stream_id == str(rest[0]) and row.version == 1
    ]
    await tamper(url, f"DELETE FROM execution_events WHERE position = {first.position}")
    report = await verify_run(backend, after=first.checkpoint)
    assert [problem.stream_id for problem in report.problems] == [rest[0]]


async def test_a_malformed_event_at_a_cut_is_a_break_not_a_crash(
    sqlite_url: str,
) -> None:
    """SQLite keeps any type in any column: a hash stored as text at a cut
    must be reported, by the run it is in, and must not stop the next."""
    async with EventStore.open(sqlite_url) as store:
        streams = await _interleaved_log(store)
        backend = store.backend
        (cut,) = await backend.log_splits(2)
        await tamper(
            sqlite_url,
            f"UPDATE execution_events SET hash = hex(hash) WHERE position = {cut.position}",
        )
        one = await verify_log(backend)
        merged = await _in_runs(backend, 2)
        assert _found(merged) == _found(one)
        assert len(one.problems) == 1
        assert one.problems[0].stream_id in streams
        later = await verify_run(backend, after=cut)  # the run after the cut alone
        assert [problem.stream_id for problem in later.problems] == [
            one.problems[0].stream_id
        ]


async def test_runs_report_the_first_hundred_breaks_as_one_pass_does(
    store: EventStore, url: str
) -> None:
    streams = [uuid.uuid4() for _ in range(MAX_PROBLEMS + 20)]
    for n in range(2):
        for stream in streams:
            event = NewEvent(type="Note", data={"n": n})
            await store.append(stream, [event], stream_type="note")
    await wait_for_horizon(store)
    await tamper(
        url, "UPDATE execution_events SET data = '{\"n\": 99}' WHERE version = 2"
    )
    one = await verify_log(store.backend)
    assert len(one.problems) == MAX_PROBLEMS  # one per broken stream, at most 100
    for parts in (2, 3):
        merged = await _in_runs(store.backend, parts)
        assert [p.position for p in merged.problems] == [
            p.position for p in one.problems
        ]
        assert merged.events == one.events == len(streams) * 2


async def test_more_processes_than_events_verify_what_there_is(
    store: EventStore,
) -> None:
    empty = await store.audit.verify_log(processes=4)
    assert (empty.events, empty.streams, empty.problems) == (0, 0, [])
    await store.append(
        uuid.uuid4(), [NewEvent(type="Note", data={})], stream_type="note"
    )
    await store.append(
        uuid.uuid4(), [NewEvent(type="Note", data={})], stream_type="note"
    )
    await wait_for_horizon(store)
    assert len(await store.backend.log_splits(4)) == 1  # two events: two runs
    report = await store.audit.verify_log(processes=4)
    assert (report.events, report.streams, report.problems) == (2, 2, [])
