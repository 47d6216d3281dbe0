"""Gap safety on PostgreSQL (ARCHITECTURE §1): commits out of position order are never skipped.

A test-only trigger sleeps a random time after each insert, so writers draw
their positions and then commit in a shuffled order. A reader tails the log
in small batches from its checkpoint while they write. At the end it has
read every event exactly once, in an order consistent with every stream.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

import pytest

from eventstore import Checkpoint, EventStore, ExecutionStatus, NewEvent, StoreSettings
from projections import ExecutionsView, Projector
from tests.helpers import (
    eventually,
    execution_in,
    make_references,
    raw_pg,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from projections import BatchReport

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WRITERS = 8
APPENDS_PER_WRITER = 30
STREAMS = 12

SLEEPY_TRIGGER = """
CREATE FUNCTION test_delay_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(random() * 0.03);
    RETURN NULL;
END $$;
CREATE TRIGGER test_delay_commit AFTER INSERT ON execution_events
    FOR EACH ROW EXECUTE FUNCTION test_delay_commit();
"""


async def test_a_tailing_reader_sees_every_event_exactly_once(pg_url: str) -> None:
    connection = await raw_pg(pg_url)
    try:
        await connection.execute(SLEEPY_TRIGGER)
    finally:
        await connection.close()

    streams = [uuid.uuid4() for _ in range(STREAMS)]
    rng = random.Random(7)
    done = asyncio.Event()
    settings = StoreSettings(pool_size=WRITERS + 2)

    async with EventStore.open(pg_url, settings=settings) as store:

        async def writer(number: int) -> list[uuid.UUID]:
            written: list[uuid.UUID] = []
            for index in range(APPENDS_PER_WRITER):
                events = [
                    NewEvent(
                        type="Tick",
                        data={"writer": number, "index": index, "part": part},
                    )
                    for part in range(rng.choice((1, 1, 2)))
                ]
                await store.append(rng.choice(streams), events, stream_type="tick")
                written.extend(event.event_id for event in events)
            return written

        read: list[tuple[int, uuid.UUID, uuid.UUID, int]] = []

        async def reader() -> None:
            checkpoint: Checkpoint | None = None
            while True:
                finished = done.is_set()
                batch = await store.log.read_batch(checkpoint, limit=3)
                read.extend(
                    (e.position, e.event_id, e.stream_id, e.version) for e in batch
                )
                if batch:
                    assert batch[-1].checkpoint > (checkpoint or Checkpoint(0, 0))
                    checkpoint = batch[-1].checkpoint
                elif finished:
                    return
                else:
                    await asyncio.sleep(0.002)

        tail = asyncio.create_task(reader())
        written_lists = await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        # Any transaction on the server (another test's) may hold the horizon
        # back a while: "done" only once it passed every append.
        await wait_for_horizon(store, within=60)
        done.set()
        await asyncio.wait_for(tail, timeout=60)

    written = {event_id for batch in written_lists for event_id in batch}
    counts = Counter(event_id for _, event_id, _, _ in read)
    assert set(counts) == written, "every committed event was read"
    assert max(counts.values()) == 1, "no event was read twice"

    versions: dict[uuid.UUID, list[int]] = defaultdict(list)
    for _, _, stream_id, version in read:
        versions[stream_id].append(version)
    for stream_versions in versions.values():
        assert stream_versions == list(range(1, len(stream_versions) + 1))

    # The scenario really happened: events were read out of position order,
    # i.e. a lower position committed after a higher one was already read.
    positions = [position for position, _, _, _ in read]
    overtaken = sum(1 for a, b in itertools.pairwise(positions) if b < a)
    assert overtaken > 0


class CountingProjector(Projector):
    """A projector that counts the batches it ran."""

    batches = 0

    async def run_once(self) -> BatchReport:
        report = await super().run_once()
        self.batches += 1
        return report


async def test_caught_up_waits_for_events_behind_an_open_transaction(
    pg_url: str, pg_store: EventStore
) -> None:
    refs = await make_references(pg_store)
    # A transaction holding an id (as any long one on the server does) keeps
    # the events committed after it below the read horizon.
    blocker = await raw_pg(pg_url)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.fetchval("SELECT pg_current_xact_id()")
    try:
        done = await execution_in(pg_store, refs, ExecutionStatus.COMPLETED)
        projector = CountingProjector(pg_store)
        catching_up = asyncio.create_task(projector.run_until_caught_up())
        # Several short batches read (a fixed sleep could pass before the
        # first on a busy machine), and still not "caught up".
        await eventually(lambda: projector.batches >= 3, "read 3 batches")
        assert not catching_up.done()
    finally:
        await transaction.rollback()
        await blocker.close()
    await asyncio.wait_for(catching_up, timeout=30)
    assert (
        await ExecutionsView(pg_store).get(done)
    ).status is ExecutionStatus.COMPLETED
