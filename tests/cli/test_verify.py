"""`eventstore verify` and `audit --verify`: tampering found, intact stores pass."""

from __future__ import annotations

import json

import sqlalchemy as sa

from eventstore import EventStore, ExecutionStatus
from eventstore.integrity import verify_log
from eventstore.schema import executions
from projections import Projector
from projections.verify import verify_executions
from tests.cli.runner import run_cli
from tests.helpers import References, execution_in, tamper


async def test_an_intact_store_verifies(
    store: EventStore, refs: References, url: str
) -> None:
    for status in ExecutionStatus:
        await execution_in(store, refs, status)
    await Projector(store).run_until_caught_up()
    late = await execution_in(
        store, refs, ExecutionStatus.RUNNING
    )  # lag is not divergence
    assert (await verify_log(store.backend)).ok
    assert await verify_executions(store) == []
    done = run_cli("verify", "--url", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: hash chains and the executions projection verified" in done.stdout
    report = json.loads(run_cli("verify", "--url", url, "--json").stdout)
    assert report["ok"] is True
    assert report["events"] == await store.log.count_events()
    audit = run_cli("audit", str(late), "--verify", "--url", url)
    assert audit.returncode == 0
    assert "hash chain verified: 2 events intact" in audit.stdout


async def test_a_changed_event_is_named_by_verify_and_audit(
    store: EventStore, refs: References, url: str
) -> None:
    victim = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    started = (await store.executions.history(victim))[1]
    await store.aclose()
    await tamper(
        url,
        'UPDATE execution_events SET data = \'{"worker_id": "mallory"}\' '
        f"WHERE position = {started.position}",
    )
    done = run_cli("verify", "--url", url, "--log-only")
    assert done.returncode == 1
    assert (
        f"broken chain: execution {victim} at position {started.position}"
        in done.stdout
    )
    audit = run_cli("audit", str(victim), "--verify", "--url", url)
    assert audit.returncode == 1
    assert len(audit.stderr.strip().splitlines()) == 1
    assert str(victim) in audit.stderr
    assert f"position {started.position}" in audit.stderr


async def test_deleted_and_reordered_events_break_the_chain(
    store: EventStore, refs: References, url: str
) -> None:
    shortened = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    swapped = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    middle = (await store.executions.history(shortened))[1]
    first, second = (await store.executions.history(swapped))[1:3]
    await tamper(
        url, f"DELETE FROM execution_events WHERE position = {middle.position}"
    )
    # Swap the contents of two events by swapping their versions.
    await tamper(
        url,
        f"UPDATE execution_events SET version = -version WHERE position = {first.position}",
    )
    await tamper(
        url,
        f"UPDATE execution_events SET version = {first.version} WHERE position = {second.position}",
    )
    await tamper(
        url,
        f"UPDATE execution_events SET version = {second.version} WHERE position = {first.position}",
    )
    report = await verify_log(store.backend)
    named = {(p.stream_id, p.position) for p in report.problems}
    assert (shortened, middle.position + 1) in named
    assert swapped in {p.stream_id for p in report.problems}


async def test_a_divergent_projection_fails_verify(
    store: EventStore, refs: References, url: str
) -> None:
    changed = await execution_in(store, refs, ExecutionStatus.RUNNING)
    removed = await execution_in(store, refs, ExecutionStatus.FAILED)
    await Projector(store).run_until_caught_up()
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
