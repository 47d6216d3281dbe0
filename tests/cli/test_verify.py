"""`eventstore verify` and `audit --verify`: tampering found, intact stores pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from eventstore import EventStore, ExecutionStatus
from eventstore.audit.integrity import verify_log
from eventstore.schema import executions
from projections.verify import verify_executions
from tests.cli.runner import run_cli
from tests.helpers import (
    References,
    assert_cli_names_break,
    assert_log_refuses_changes,
    assert_one_break,
    execution_in,
    project_everything,
    tamper,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from uuid import UUID

    from eventstore import RecordedEvent


async def test_an_intact_store_verifies(
    store: EventStore, refs: References, url: str
) -> None:
    for status in ExecutionStatus:
        await execution_in(store, refs, status)
    await project_everything(store)
    late = await execution_in(
        store, refs, ExecutionStatus.RUNNING
    )  # lag is not divergence
    assert (await verify_log(store.backend)).ok
    assert await verify_executions(store) == []
    leader = store.backend.leader_locks()  # a projector leads: the lag will be folded
    assert await leader.try_acquire("executions:0/1")
    try:
        done = run_cli("verify", "--url", url)
    finally:
        await leader.aclose()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: hash chains and the executions projection verified" in done.stdout
    await project_everything(store)
    report = json.loads(run_cli("verify", "--url", url, "--json").stdout)
    assert report["ok"] is True
    assert report["events"] == await store.log.count_events()
    audit = run_cli("audit", str(late), "--verify", "--url", url)
    assert audit.returncode == 0
    assert "hash chain verified: 2 events intact" in audit.stdout


async def test_verify_records_what_it_found_for_the_console(
    store: EventStore, refs: References, url: str
) -> None:
    assert await store.audit.last_verify_run() is None
    victim, _ = await _two_interleaved(store, refs)
    await project_everything(store)
    before = datetime.now(UTC)
    assert run_cli("verify", "--url", url).returncode == 0
    intact = await store.audit.last_verify_run()
    assert intact is not None
    assert intact.ok
    assert (intact.events, intact.streams) == (8, 2)
    assert intact.projection_checked
    assert intact.first_problem is None
    # The two clocks may differ by the database's rounding, not more.
    assert before - timedelta(seconds=1) <= intact.started_at <= intact.finished_at

    started = (await store.executions.history(victim))[1]
    await tamper(
        url,
        'UPDATE execution_events SET data = \'{"worker_id": "mallory"}\' '
        f"WHERE position = {started.position}",
    )
    broken = run_cli("verify", "--log-only", "--url", url)
    assert broken.returncode == 1
    found = await store.audit.last_verify_run()
    assert found is not None
    assert not found.ok
    assert found.problems == 1
    assert not found.projection_checked
    assert found.first_problem is not None
    assert found.first_problem in broken.stdout  # the line the command printed
    assert f"execution {victim} at position {started.position}" in found.first_problem


async def _two_interleaved(store: EventStore, refs: References) -> tuple[UUID, UUID]:
    """Two completed executions whose events alternate in the log."""
    lifecycle = store.executions
    ids = [
        await lifecycle.create(
            message_id=refs.message.id, graph_id=refs.graph.id, inputs={"n": n}
        )
        for n in range(2)
    ]
    for execution_id in ids:
        await lifecycle.start(execution_id, worker_id="worker-1")
    for execution_id in ids:
        await lifecycle.progress(execution_id, step="read", metrics={"tokens": 3})
    for execution_id in ids:
        await lifecycle.complete(execution_id, result={"ok": True})
    # verify_log reads below the read horizon, which any transaction still
    # open on the server (another test's) holds back for a moment.
    await wait_for_horizon(store)
    return ids[0], ids[1]


async def test_a_changed_event_is_named_by_verify_and_audit(
    store: EventStore, refs: References, url: str
) -> None:
    victim, other = await _two_interleaved(store, refs)
    started = (await store.executions.history(victim))[1]
    await tamper(
        url,
        'UPDATE execution_events SET data = \'{"worker_id": "mallory"}\' '
        f"WHERE position = {started.position}",
    )
    await assert_log_refuses_changes(url)
    await assert_one_break(
        store, victim, started.position, "the hash of version 2 does not match"
    )
    assert_cli_names_break(url, victim, started.position)
    assert run_cli("audit", str(other), "--verify", "--url", url).returncode == 0


async def test_a_deleted_event_is_named_at_the_event_after_it(
    store: EventStore, refs: References, url: str
) -> None:
    shortened, other = await _two_interleaved(store, refs)
    history = await store.executions.history(shortened)
    await tamper(
        url, f"DELETE FROM execution_events WHERE position = {history[1].position}"
    )
    await assert_log_refuses_changes(url)
    # The first event left that breaks the chain is the deleted one's successor.
    await assert_one_break(
        store, shortened, history[2].position, "version 3 where 2 was expected"
    )
    assert_cli_names_break(url, shortened, history[2].position)
    assert run_cli("audit", str(other), "--verify", "--url", url).returncode == 0


async def test_two_swapped_events_are_named_at_the_first(
    store: EventStore, refs: References, url: str
) -> None:
    """Two events swap places in their stream (their versions are exchanged)."""
    swapped, _ = await _two_interleaved(store, refs)
    first, second = (await store.executions.history(swapped))[1:3]
    await tamper(url, *_swap_versions(first, second))
    await assert_log_refuses_changes(url)
    # In log order the row at the first position now claims version 3.
    await assert_one_break(
        store, swapped, first.position, "version 3 where 2 was expected"
    )
    assert_cli_names_break(url, swapped, first.position)


def _swap_versions(first: RecordedEvent, second: RecordedEvent) -> list[str]:
    """SQL exchanging two events' versions (through a free one: they are unique)."""
    update = "UPDATE execution_events SET version"
    return [
        f"{update} = -version WHERE position = {first.position}",
        f"{update} = {first.version} WHERE position = {second.position}",
        f"{update} = {second.version} WHERE position = {first.position}",
    ]


async def test_two_events_moved_in_the_log_are_named_at_the_first(
    store: EventStore, refs: References, url: str
) -> None:
    """Two events of a stream exchange their places in the log, not in the stream."""
    moved, _ = await _two_interleaved(store, refs)
    first, second = (await store.executions.history(moved))[1:3]
    await tamper(url, *_swap_positions(url, first, second))
    await assert_log_refuses_changes(url)
    # In log order version 3 now comes first, at the first event's position.
    await assert_one_break(
        store, moved, first.position, "version 3 where 2 was expected"
    )
    assert_cli_names_break(url, moved, first.position)


def _swap_positions(url: str, first: RecordedEvent, second: RecordedEvent) -> list[str]:
    """SQL exchanging two events' positions (through a free one: they are unique)."""
    place = "UPDATE execution_events SET position"
    return [
        f"{place} = -position WHERE position = {first.position}",
        f"{place} = {first.position}{_xid(url, first)} "
        f"WHERE position = {second.position}",
        f"{place} = {second.position}{_xid(url, second)} "
        f"WHERE position = {-first.position}",
    ]


def _xid(url: str, event: RecordedEvent) -> str:
    """On PostgreSQL, the log is ordered by transaction id first: move that too."""
    if url.startswith("sqlite"):
        return ""
    return f", transaction_id = '{event.checkpoint.transaction_id}'::xid8"


async def test_a_divergent_projection_fails_verify(
    store: EventStore, refs: References, url: str
) -> None:
    changed = await execution_in(store, refs, ExecutionStatus.RUNNING)
    removed = await execution_in(store, refs, ExecutionStatus.FAILED)
    await project_everything(store)
    async with store.backend.begin_write() as connection:
        await connection.execute(
            sa.update(executions)
            .where(executions.c.id == changed)
            .values(status="completed")
        )
        await connection.execute(
            sa.delete(executions).where(executions.c.id == removed)
        )
    divergences = {d.execution_id: d.reason for d in await verify_executions(store)}
    assert "status" in divergences[changed]
    assert "no row" in divergences[removed]
    done = run_cli("verify", "--url", url)
    assert done.returncode == 1
    assert f"projection diverges: execution {changed}" in done.stdout
    assert (await verify_log(store.backend)).ok  # the log itself is intact


# PostgreSQL orders the log by (transaction id, position): two more ways to
# move events of a stream out of their order, each only half of that key.


async def test_positions_moved_without_their_transaction_ids(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    moved, _ = await _two_interleaved(pg_store, pg_refs)
    first, second = (await pg_store.executions.history(moved))[1:3]
    place = "UPDATE execution_events SET position"
    await tamper(
        pg_url,
        f"{place} = -position WHERE position = {first.position}",
        f"{place} = {first.position} WHERE position = {second.position}",
        f"{place} = {second.position} WHERE position = {-first.position}",
    )
    # By position, version 3 now comes first.
    await assert_one_break(
        pg_store, moved, first.position, "version 3 lies before version 2 in the log"
    )
    assert_cli_names_break(pg_url, moved, first.position)


async def test_transaction_ids_moved_without_their_positions(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    moved, _ = await _two_interleaved(pg_store, pg_refs)
    first, second = (await pg_store.executions.history(moved))[1:3]
    xid = "UPDATE execution_events SET transaction_id"
    await tamper(
        pg_url,
        f"{xid} = '{second.checkpoint.transaction_id}'::xid8 "
        f"WHERE position = {first.position}",
        f"{xid} = '{first.checkpoint.transaction_id}'::xid8 "
        f"WHERE position = {second.position}",
    )
    # In log order, (transaction id, position), version 3 now comes first.
    await assert_one_break(
        pg_store, moved, second.position, "version 3 where 2 was expected"
    )
    assert_cli_names_break(pg_url, moved, second.position)
