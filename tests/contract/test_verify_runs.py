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
from typing import TYPE_CHECKING

from eventstore import NewEvent
from eventstore.audit.integrity import (
    LogReport,
    reads_see_what_committed_before,
    verify_log,
    verify_run,
)
from eventstore.audit.verify_processes import _merged
from tests.helpers import tamper, wait_for_horizon

if TYPE_CHECKING:
    from uuid import UUID

    from eventstore import EventStore
    from eventstore.backends.base import Backend

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
            rows = await store.backend.read_rows_as_stored(
                after, limit=1000, until=until
            )
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
            assert _found(await _in_runs(backend, parts)) == _found(one), (
                position,
                parts,
            )
    assert {problem.stream_id for problem in one.problems} <= set(streams)
