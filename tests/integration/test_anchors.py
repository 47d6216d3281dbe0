"""Chain anchors: whole streams removed, cut short or slipped in are found."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from eventstore import ExecutionNotFound, ExecutionStatus, RecordAltered
from eventstore.audit.anchors import create_anchor, verify_anchors
from eventstore.audit.archiving import archive_finished_before
from eventstore.audit.integrity import verify_log
from eventstore.events.system_payloads import CHAIN_ANCHORS_STREAM
from tests.cli.runner import run_cli
from tests.helpers import (
    assert_cli_names_break,
    assert_log_refuses_changes,
    assert_one_break,
    execution_in,
    project_everything,
    tamper,
    wait_for_horizon,
)

if TYPE_CHECKING:
    import uuid
    from pathlib import Path

    from eventstore import EventStore
    from tests.helpers import References

KEY = b"operator-secret-never-in-the-database"


def _hex(url: str, stream_id: uuid.UUID) -> str:
    """The stream id as an SQL literal of the backend's UUID column."""
    return f"'{stream_id.hex}'" if url.startswith("sqlite") else f"'{stream_id}'"


async def test_anchors_of_an_intact_store_verify_across_an_archive(
    store: EventStore, refs: References, tmp_path: Path
) -> None:
    finished = [
        await execution_in(store, refs, ExecutionStatus.COMPLETED) for _ in range(3)
    ]
    running = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await wait_for_horizon(store)
    first = await create_anchor(store, key=KEY)
    assert first.streams == 4
    assert {head.stream_id for head in first.heads} == {*finished, running}
    await store.executions.progress(running, step="write")
    await wait_for_horizon(store)
    second = await create_anchor(store, key=KEY)
    assert [head.stream_id for head in second.heads] == [running]  # only changes
    await project_everything(store)
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    await archive_finished_before(
        store, datetime.now(UTC) + timedelta(minutes=1), archive_dir
    )
    await wait_for_horizon(store)
    third = await create_anchor(store, key=KEY)
    assert third.streams == 1
    assert set(third.removed) == set(finished)

    report = await verify_anchors(store.backend, key=KEY)
    assert report.ok, report.problems
    assert report.anchors == 3
    assert report.signatures_checked == 3
    assert (await verify_anchors(store.backend)).ok  # without the key: no signatures
    wrong = await verify_anchors(store.backend, key=b"not the key")
    assert len(wrong.problems) == 3
    assert all("signature does not verify" in p.reason for p in wrong.problems)
    assert (await verify_log(store.backend)).ok


async def test_a_deleted_stream_is_named_through_the_anchors(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    kept = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    victim = await execution_in(store, refs, ExecutionStatus.FAILED)
    await wait_for_horizon(store)
    await create_anchor(store, key=KEY)
    anchored_at = (await store.backend.read_stream_as_stored(CHAIN_ANCHORS_STREAM))[
        -1
    ].position
    await tamper(
        url, f"DELETE FROM execution_events WHERE stream_id = {_hex(url, victim)}"
    )
    await assert_log_refuses_changes(url)

    assert (await verify_log(store.backend)).ok  # every remaining chain is whole
    # No event of the stream is left to point at: the anchor's position is named.
    reason = (
        f"the stream is missing: the anchor at position {anchored_at} recorded it "
        "at version 2"
    )
    report = await verify_anchors(store.backend, key=KEY)
    assert [(p.stream_id, p.position, p.reason) for p in report.problems] == [
        (victim, None, reason)
    ]
    with pytest.raises(RecordAltered) as caught:
        await create_anchor(store, key=KEY)  # never anchor over a damaged log
    assert caught.value.stream_id == victim

    key_file = tmp_path / "anchor.key"
    key_file.write_bytes(KEY)
    done = run_cli("verify", "--url", url, "--log-only", "--key-file", str(key_file))
    assert done.returncode == 1, done.stdout + done.stderr
    mismatches = [line for line in done.stdout.splitlines() if "mismatch" in line]
    assert mismatches == [f"anchor mismatch: stream {victim}: {reason}"], done.stdout
    assert "broken chain" not in done.stdout
    found = json.loads(run_cli("verify", "--url", url, "--log-only", "--json").stdout)
    assert found["ok"] is False
    assert found["chain_problems"] == []
    assert found["anchor_problems"] == [
        {"stream_id": str(victim), "position": None, "reason": reason}
    ]
    audit = run_cli("audit", str(victim), "--verify", "--url", url)
    assert audit.returncode != 0  # nothing left to verify: not found
    assert str(victim) in audit.stderr
    assert run_cli("audit", str(kept), "--verify", "--url", url).returncode == 0


async def test_a_stream_cut_short_is_found(
    store: EventStore, refs: References, url: str
) -> None:
    victim = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    last = (await store.executions.history(victim))[-1]
    await wait_for_horizon(store)
    await create_anchor(store)
    await tamper(url, f"DELETE FROM execution_events WHERE position = {last.position}")
    await assert_log_refuses_changes(url)

    assert (await verify_log(store.backend)).ok  # a cut tail leaves a valid chain
    problems = (await verify_anchors(store.backend)).problems
    assert len(problems) == 1
    assert problems[0].stream_id == victim
    assert "cut short" in problems[0].reason


async def test_a_stream_slipped_in_before_an_anchor_is_found(
    store: EventStore, refs: References, url: str
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)
    await create_anchor(store)
    forged = await execution_in(store, refs, ExecutionStatus.RUNNING)
    move = "position = -position"
    if not url.startswith("sqlite"):
        move += ", transaction_id = '1'::xid8"
    await tamper(
        url, f"UPDATE execution_events SET {move} WHERE stream_id = {_hex(url, forged)}"
    )
    await assert_log_refuses_changes(url)
    problems = (await verify_anchors(store.backend)).problems
    assert [(p.stream_id, "slipped in" in p.reason) for p in problems] == [
        (forged, True)
    ]


async def test_a_forged_event_breaks_its_stream_chain(
    store: EventStore, refs: References, url: str
) -> None:
    victim = await execution_in(store, refs, ExecutionStatus.RUNNING)
    other = await execution_in(store, refs, ExecutionStatus.RUNNING)
    last = (await store.executions.history(victim))[-1]
    new_id = (
        "lower(hex(randomblob(16)))"
        if url.startswith("sqlite")
        else "gen_random_uuid()"
    )
    # A completion slipped in after the last event, with that event's hash.
    await tamper(
        url,
        "INSERT INTO execution_events (stream_id, version, stream_type, event_id, "
        "type, schema_version, data, metadata, occurred_at, hash) "
        f"SELECT stream_id, version + 1, stream_type, {new_id}, 'ExecutionCompleted', "
        f"1, data, metadata, occurred_at, hash FROM execution_events "
        f"WHERE position = {last.position}",
    )
    await assert_log_refuses_changes(url)
    forged = (await store.backend.read_stream_as_stored(victim))[-1]
    assert (forged.version, forged.type) == (3, "ExecutionCompleted")
    assert forged.position > last.position
    await wait_for_horizon(store)
    await assert_one_break(
        store, victim, forged.position, "the hash of version 3 does not match"
    )
    assert_cli_names_break(url, victim, forged.position)
    assert run_cli("audit", str(other), "--verify", "--url", url).returncode == 0


async def test_a_rewritten_anchor_fails_its_signature(
    store: EventStore, refs: References, url: str
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)
    await create_anchor(store, key=KEY)
    zeros = "0" * 64
    rewrite = (
        f"json_set(data, '$.digest', '{zeros}')"
        if url.startswith("sqlite")
        else f"jsonb_set(data, '{{digest}}', '\"{zeros}\"')"
    )
    await tamper(
        url,
        f"UPDATE execution_events SET data = {rewrite} "
        f"WHERE stream_id = {_hex(url, CHAIN_ANCHORS_STREAM)}",
    )
    await assert_log_refuses_changes(url)
    report = await verify_anchors(store.backend, key=KEY)
    assert any("signature does not verify" in p.reason for p in report.problems)
    assert CHAIN_ANCHORS_STREAM in {
        p.stream_id for p in (await verify_log(store.backend)).problems
    }


async def test_the_anchor_stream_has_a_timeline_but_is_no_execution(
    store: EventStore,
) -> None:
    await store.audit.anchor()
    timeline = await store.audit.timeline(CHAIN_ANCHORS_STREAM)
    assert [event.type for event in timeline.events] == ["ChainAnchor"]
    assert timeline.state is None
    with pytest.raises(ExecutionNotFound):
        await store.executions.get(CHAIN_ANCHORS_STREAM)
