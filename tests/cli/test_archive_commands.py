"""`eventstore cleanup --archive-before`, `eventstore anchor` and `verify --key-file`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from eventstore import ExecutionStatus, NewEvent
from eventstore.events.system_payloads import ARCHIVE_RECEIPTS_STREAM
from tests.cli.runner import run_cli
from tests.helpers import (
    append_behind_the_guards,
    count_events,
    execution_in,
    project_everything,
    tamper,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from eventstore import EventStore
    from tests.helpers import References


def _later() -> str:
    return (datetime.now(UTC) + timedelta(minutes=1)).isoformat()


async def test_cleanup_archives_finished_executions(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    done = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    live = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await project_everything(store)

    result = run_cli(
        "cleanup", "--archive-before", _later(), "--to", str(archive_dir),
        "--url", url, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["archive"]
    assert report["executions"] == [str(done)]
    assert report["events"] == 3
    assert (archive_dir / report["file"].rsplit("/", 1)[-1]).exists()
    assert [e async for e in store.read_stream(done)] == []
    assert len(await store.executions.history(live)) == 2

    again = run_cli(
        "cleanup", "--archive-before", _later(), "--to", str(archive_dir), "--url", url
    )
    assert again.returncode == 0
    assert "no execution finished before that time" in again.stdout


async def test_cleanup_refuses_bad_archive_arguments_and_writes_nothing(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await project_everything(store)
    before = await count_events(store)
    for arguments, message in (
        (
            ["--archive-before", "yesterday", "--to", str(tmp_path)],
            "invalid --archive-before",
        ),
        (["--to", str(tmp_path)], "go together"),
        (
            ["--archive-before", _later(), "--to", str(tmp_path / "nope")],
            "no directory",
        ),
    ):
        result = run_cli("cleanup", *arguments, "--url", url)
        assert result.returncode == 2, (arguments, result.stderr)
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert await count_events(store) == before


async def test_cleanup_refuses_to_archive_past_a_lagging_projection(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await project_everything(store)
    await execution_in(store, refs, ExecutionStatus.FAILED)  # not projected yet
    before = await count_events(store)
    result = run_cli(
        "cleanup", "--archive-before", _later(), "--to", str(tmp_path), "--url", url
    )
    assert result.returncode == 1
    assert "has not folded position" in result.stderr
    assert await count_events(store) == before


async def test_anchor_then_verify_finds_a_deleted_stream(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "anchor.key"
    key_file.write_text("a long operator secret\n")
    victim = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await execution_in(store, refs, ExecutionStatus.RUNNING)
    await project_everything(store)
    await wait_for_horizon(store)

    anchored = run_cli("anchor", "--key-file", str(key_file), "--url", url, "--json")
    assert anchored.returncode == 0, anchored.stderr
    assert json.loads(anchored.stdout)["streams"] == 2
    assert json.loads(anchored.stdout)["signed"] is True
    intact = run_cli("verify", "--key-file", str(key_file), "--url", url)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "ok: 1 chain anchors hold (1 signatures checked)" in intact.stdout
    unkeyed = run_cli("verify", "--url", url)
    assert unkeyed.returncode == 0, unkeyed.stdout + unkeyed.stderr
    assert "1 signed anchors' signatures not checked" in unkeyed.stdout

    where = f"'{victim.hex}'" if url.startswith("sqlite") else f"'{victim}'"
    await tamper(url, f"DELETE FROM execution_events WHERE stream_id = {where}")
    await tamper(url, f"DELETE FROM executions WHERE id = {where}")
    broken = run_cli("verify", "--key-file", str(key_file), "--url", url)
    assert broken.returncode == 1
    assert f"anchor mismatch: stream {victim}" in broken.stdout
    assert "missing" in broken.stdout

    missing_key = run_cli("verify", "--key-file", str(tmp_path / "none"), "--url", url)
    assert missing_key.returncode == 2
    assert "cannot read the key file" in missing_key.stderr


async def test_audit_replays_and_verifies_an_archive(
    store: EventStore, refs: References, url: str, tmp_path: Path
) -> None:
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    done = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    final = await store.executions.get(done)
    await project_everything(store)
    archived = run_cli(
        "cleanup", "--archive-before", _later(), "--to", str(archive_dir),
        "--url", url, "--json",
    )  # fmt: skip
    data_file = json.loads(archived.stdout)["archive"]["file"]

    listed = run_cli("audit", "--archive", data_file, "--url", url, "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["executions"] == {str(done): final.model_dump(mode="json")}
    one = run_cli(
        "audit", str(done), "--archive", data_file, "--as-of", "1", "--url", url
    )
    assert one.returncode == 0, one.stderr
    assert "verified: 1 executions, 3 events" in one.stdout
    assert "ExecutionCreated" in one.stdout
    assert "ExecutionCompleted" not in one.stdout  # the prefix at position 1

    verified = run_cli("audit", "--archive", data_file, "--verify", "--url", url)
    assert verified.returncode == 0, verified.stderr
    assert "verified: 1 executions, 3 events" in verified.stdout
    receipts = run_cli("audit", str(ARCHIVE_RECEIPTS_STREAM), "--verify", "--url", url)
    assert receipts.returncode == 0, receipts.stderr
    assert "hash chain verified: 1 events intact" in receipts.stdout
    assert "ArchiveReceipt" in receipts.stdout
    assert "no state" not in receipts.stdout

    damaged = bytearray(Path(data_file).read_bytes())
    damaged[-5] ^= 0xFF
    Path(data_file).write_bytes(bytes(damaged))
    for arguments in ([], ["--verify"]):
        refused = run_cli("audit", "--archive", data_file, *arguments, "--url", url)
        assert refused.returncode == 1
        assert "differs from the manifest" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


async def test_audit_of_an_event_the_fold_cannot_apply_is_a_problem_found(
    store: EventStore, refs: References, url: str
) -> None:
    poisoned = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await append_behind_the_guards(
        store, url, poisoned, [NewEvent(type="AuditNote", data={})]
    )

    result = run_cli("audit", str(poisoned), "--url", url)

    assert result.returncode == 1
    assert "cannot apply AuditNote" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_audit_as_of_without_an_id_lists_the_store(
    store: EventStore, refs: References, url: str
) -> None:
    done = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    running = await execution_in(store, refs, ExecutionStatus.RUNNING)
    started = (await store.executions.history(running))[1]
    result = run_cli(
        "audit", "--as-of", str(started.position - 1), "--url", url, "--json"
    )
    assert result.returncode == 0, result.stderr
    statuses = {
        e["execution_id"]: e["status"] for e in json.loads(result.stdout)["executions"]
    }
    assert statuses == {str(done): "completed", str(running): "pending"}
    table = run_cli("audit", "--as-of", datetime.now(UTC).isoformat(), "--url", url)
    assert table.returncode == 0
    assert str(running) in table.stdout
    assert "running" in table.stdout
    for arguments in (["--verify"], []):
        refused = run_cli("audit", *arguments, "--url", url)
        assert refused.returncode == 2
        assert len(refused.stderr.strip().splitlines()) == 1
