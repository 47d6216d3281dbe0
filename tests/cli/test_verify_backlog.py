"""`eventstore verify` reports a projection stuck behind the log.

Checking rows only up to the checkpoint said "projection verified" while a
poison event held the projection back for ever: verify now also names the
events after the checkpoint that cannot be applied, and a projection behind
the log that no projector leads.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from eventstore import EventStore, ExecutionStatus, ProjectionError
from eventstore.partitions import Partition
from projections import Projector
from projections.verify import Stalled, Unapplicable, verify_backlog
from tests.cli.runner import run_cli
from tests.helpers import (
    Poison,
    References,
    execution_in,
    poison_metric_overflow,
    poison_unknown_message,
    project_everything,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    PoisonMaker = Callable[[EventStore, References], Awaitable[Poison]]

PARTITIONS = (Partition(0, 2), Partition(1, 2))


@pytest.mark.parametrize(
    ("make_poison", "reason"),
    [
        (poison_unknown_message, "does not exist"),
        (poison_metric_overflow, "sums beyond the largest float"),
    ],
    ids=["unknown-message", "metric-overflow"],
)
async def test_verify_names_the_poison_the_projection_is_stuck_at(
    store: EventStore,
    refs: References,
    url: str,
    make_poison: PoisonMaker,
    reason: str,
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await project_everything(store)
    poison = await make_poison(store, refs)
    await execution_in(store, refs, ExecutionStatus.COMPLETED)  # held back behind it
    await wait_for_horizon(store)
    with pytest.raises(ProjectionError):
        await Projector(store).run_until_caught_up()

    backlog = await verify_backlog(store)
    assert backlog.unapplicable == [
        Unapplicable(
            poison.position,
            poison.event_id,
            poison.stream_id,
            backlog.unapplicable[0].reason,
        )
    ]
    assert reason in backlog.unapplicable[0].reason
    assert backlog.stalled == [Stalled(0, 1, backlog.behind)]
    assert backlog.behind >= 4  # the poison and the run after it

    done = run_cli("verify", "--url", url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verified" not in done.stdout
    lines = done.stdout.splitlines()
    stuck = [line for line in lines if line.startswith("projection stuck")]
    assert stuck == [
        f"projection stuck: position {poison.position} (event {poison.event_id}, "
        f"execution {poison.stream_id}) cannot be applied: "
        f"{backlog.unapplicable[0].reason}"
    ], done.stdout
    assert (
        f"projection stalled: executions is behind the log by {backlog.behind} "
        "events with nobody projecting"
    ) in lines, done.stdout
    report = json.loads(run_cli("verify", "--url", url, "--json").stdout)
    assert report["ok"] is False
    assert [p["event_id"] for p in report["projection_unapplicable"]] == [
        str(poison.event_id)
    ]
    assert report["projection_stalled"] == [
        {"partition": 0, "partitions": 1, "behind": backlog.behind}
    ]


async def test_a_projection_behind_with_nobody_projecting_fails_verify(
    store: EventStore, refs: References, url: str
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await project_everything(store)
    await execution_in(store, refs, ExecutionStatus.RUNNING)
    await wait_for_horizon(store)
    backlog = await verify_backlog(store)
    assert (backlog.behind, backlog.unapplicable) == (2, [])
    assert backlog.stalled == [Stalled(0, 1, 2)]
    done = run_cli("verify", "--url", url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "projection stalled: executions is behind the log by 2 events with "
        "nobody projecting"
    ) in done.stdout

    # The same lag with a projector leading the slot is only lag.
    leader = store.backend.leader_locks()
    assert await leader.try_acquire("executions:0/1")
    try:
        led = run_cli("verify", "--url", url)
    finally:
        await leader.aclose()
    assert led.returncode == 0, led.stdout + led.stderr
    assert "2 events behind the log; a projector leads it" in led.stdout

    await project_everything(store)
    assert (await verify_backlog(store)).ok
    assert run_cli("verify", "--url", url).returncode == 0


async def test_only_a_stalled_partition_is_reported(
    store: EventStore, refs: References, url: str
) -> None:
    for _ in range(6):
        await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)
    projector = Projector(store, partitions=2)
    await projector.run_until_caught_up()
    late: list[UUID] = []
    while not all(any(p.holds(i) for i in late) for p in PARTITIONS):
        late.append(await execution_in(store, refs, ExecutionStatus.PENDING))
    await wait_for_horizon(store)
    leader = store.backend.leader_locks()
    assert await leader.try_acquire("executions:1/2")
    try:
        backlog = await verify_backlog(store)
        done = run_cli("verify", "--url", url)
    finally:
        await leader.aclose()
    behind_0 = sum(PARTITIONS[0].holds(i) for i in late)
    assert backlog.behind == len(late)
    assert backlog.stalled == [Stalled(0, 2, behind_0)]
    assert done.returncode == 1
    assert (
        f"projection stalled: executions partition 0/2 is behind the log by "
        f"{behind_0} events with nobody projecting"
    ) in done.stdout
