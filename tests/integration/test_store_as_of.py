"""The store-wide "as of": one indexed query equals replaying every stream.

The replay is the independent reference of tests/integration/test_as_of_random.py
(each stream's prefix at the moment counted and folded here, not taken from
`state_as_of`); this is its small fixed-seed case, with the "since" of now.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING

from eventstore import ExecutionStatus
from eventstore.audit.replay import AsOf, statuses_as_of
from tests.helpers import execution_in
from tests.integration.test_as_of_random import check_premises, reference_statuses

if TYPE_CHECKING:
    from eventstore import EventStore
    from tests.helpers import References


async def test_store_wide_as_of_equals_replaying_every_stream(
    store: EventStore, refs: References
) -> None:
    rng = random.Random(7)
    ids = []
    for _ in range(12):
        ids.append(await execution_in(store, refs, rng.choice(list(ExecutionStatus))))
        # Move some earlier executions on, so that streams interleave in the log.
        for execution_id in rng.sample(ids, k=min(2, len(ids))):
            state = await store.executions.get(execution_id)
            if state.status is ExecutionStatus.PENDING:
                await store.executions.start(execution_id, worker_id="w")
            elif state.status is ExecutionStatus.RUNNING:
                await store.executions.progress(execution_id, step="s")
    histories = {i: await store.executions.history(i) for i in ids}
    check_premises(histories)
    events = sorted(
        (e for history in histories.values() for e in history), key=lambda e: e.position
    )
    moments = [AsOf(position=e.position) for e in rng.sample(events, k=10)]
    moments += [AsOf(time=e.recorded_at) for e in rng.sample(events, k=10)]
    moments += [
        AsOf(time=e.recorded_at - timedelta(microseconds=1))
        for e in rng.sample(events, k=5)
    ]
    moments += [AsOf(position=0), AsOf(position=events[-1].position)]

    for moment in moments:
        found = {
            s.execution_id: (s.status, s.since, s.version)
            for s in await statuses_as_of(store.backend, moment)
        }
        assert found == reference_statuses(histories, moment), moment

    now = await statuses_as_of(store.backend)
    assert {s.execution_id: s.status for s in now} == {
        i: (await store.executions.get(i)).status for i in ids
    }
    since = {s.execution_id: s.since for s in now}
    for execution_id, history in histories.items():
        setting = [e for e in history if e.type != "ExecutionProgressed"]
        setting = [e for e in setting if e.type != "ExecutionCancellationRequested"]
        assert since[execution_id] == setting[-1].occurred_at
