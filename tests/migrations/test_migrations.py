"""The alembic tree builds exactly the schema of `eventstore.schema`, both ways."""

from __future__ import annotations

import subprocess
import sys
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from eventstore import (
    EventStore,
    ExecutionCreated,
    ExecutionStarted,
    ExecutionStatus,
    NewEvent,
    SchemaNotMigrated,
    ValidationError,
    schema,
)
from eventstore.audit.integrity import verify_log
from eventstore.audit.receipts import tombstones, verify_receipts
from eventstore.chains import canonical_for
from eventstore.events.system_payloads import (
    ARCHIVE_RECEIPTS_STREAM,
    ArchiveReceipt,
    StreamHead,
)
from eventstore.hashing import GENESIS_HASH, chain_hash
from eventstore.leases import Leases
from eventstore.migrating import SCHEMA_HEAD, alembic_config, run_migration
from eventstore.reaper import reap
from eventstore.revisions import VERSION_TABLE
from tests.helpers import (
    all_rows,
    make_references,
    project_everything,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Connection


def _drift(
    connection: Connection, metadata: sa.MetaData = schema.metadata
) -> list[object]:
    postgres = connection.dialect.name == "postgresql"

    def on_this_database(item: Any, name: str | None, kind: str, *_: object) -> bool:
        return postgres or not (
            kind == "index" and name in schema.POSTGRES_ONLY_INDEXES
        )

    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": False,
            "include_object": on_this_database,
            "version_table": VERSION_TABLE,
        },
    )
    return list(compare_metadata(context, metadata))


async def drift_of(store: EventStore) -> list[object]:
    async with store.backend.engine.connect() as connection:
        return await connection.run_sync(_drift)


def test_the_code_needs_the_head_revision() -> None:
    assert (
        ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD
    )


async def test_upgrade_head_equals_the_metadata(empty_url: str) -> None:
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        assert await store.schema_revision() == SCHEMA_HEAD
        assert await drift_of(store) == []


async def test_downgrade_then_upgrade(empty_url: str) -> None:
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        await run_migration(store.backend, direction="downgrade", revision="base")
        assert await store.schema_revision() is None
        store.backend.forget_schema()
        with pytest.raises(SchemaNotMigrated):
            await store.append(
                "0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71", [_event()], stream_type="note"
            )
        await store.migrate()
        assert await drift_of(store) == []
        result = await store.append(
            "0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71", [_event()], stream_type="note"
        )
        assert result.version == 1


async def test_migrate_is_idempotent(url: str) -> None:
    async with EventStore.open(url) as store:
        await store.append(
            "0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71", [_event()], stream_type="note"
        )
        await store.migrate()
        assert await store.schema_revision() == SCHEMA_HEAD
        await wait_for_horizon(store)  # another session may hold it back a moment
        assert len([e async for e in store.read_all()]) == 1


async def test_an_unmigrated_database_says_so(empty_url: str) -> None:
    async with EventStore.open(empty_url) as store:
        assert await store.schema_revision() is None
        with pytest.raises(SchemaNotMigrated, match="eventstore migrate") as caught:
            await store.append(
                "0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71", [_event()], stream_type="note"
            )
        assert caught.value.current is None
        assert caught.value.head == SCHEMA_HEAD
        with pytest.raises(SchemaNotMigrated):
            await store.threads.create(title="t")
        with pytest.raises(SchemaNotMigrated):
            await store.executions.get("0b6cc1a4-6cf6-4a53-a1a3-55d58b1b3c71")
        with pytest.raises(SchemaNotMigrated):
            [e async for e in store.read_all()]


def _event() -> NewEvent:
    return NewEvent(type="Note", data={"n": 1})


@pytest.mark.slow
def test_the_wheel_ships_the_migrations_and_migrates_when_installed(
    tmp_path: Path,
) -> None:
    """`store.migrate()` works from an installed copy, not only from the source tree."""
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path / "dist"), str(root)],
        check=True,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("eventstore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "eventstore/_migrations/env.py" in names
    assert "eventstore/_migrations/versions/0001_event_log.py" in names
    assert "projections/__init__.py" in names
    assert "eventstore/py.typed" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q",
         "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    database = f"sqlite:///{tmp_path / 'installed.db'}"
    script = (
        "import asyncio, eventstore, eventstore.migrating as m\n"
        f"assert eventstore.__file__.startswith({str(target)!r}), eventstore.__file__\n"
        f"assert str(m.migrations_location()).startswith({str(target)!r})\n"
        "async def main():\n"
        f"    async with eventstore.EventStore.open({database!r}) as store:\n"
        "        await store.migrate()\n"
        "        print(await store.schema_revision())\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == SCHEMA_HEAD


async def test_the_drift_check_sees_a_difference(url: str) -> None:
    """The comparison above is not vacuous: a column the migrations lack shows up."""
    changed = sa.MetaData(naming_convention=schema.NAMING_CONVENTION)
    for table in schema.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["executions"].append_column(sa.Column("extra", sa.Integer))

    async with (
        EventStore.open(url) as store,
        store.backend.engine.connect() as connection,
    ):
        differences = await connection.run_sync(_drift, changed)
    assert [d[0] for d in differences if isinstance(d, tuple)] == ["add_column"]


async def test_upgrade_to_0006_keeps_checkpoints_and_tombstones_old_archives(
    empty_url: str,
) -> None:
    """Revision 0006 with data in it: checkpoints keep their place, and every
    stream an earlier archive's receipt names gets its tombstone (so `verify`
    finds the receipts and tombstones agree)."""
    archived = uuid.uuid4()
    receipt = ArchiveReceipt(
        file="archive-old.jsonl.gz",
        file_sha256="a" * 64,
        manifest_sha256="b" * 64,
        finished_before=datetime(2026, 1, 1, tzinfo=UTC),
        events=4,
        streams=[StreamHead(stream_id=archived, version=4, hash="c" * 64)],
    )
    event = NewEvent.of(receipt, metadata={"actor": "archivist"})
    async with EventStore.open(empty_url) as store:
        await run_migration(store.backend, direction="upgrade", revision="0005")
        async with store.backend.engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO projection_checkpoints (name, partition, "
                    "transaction_id, position) VALUES ('executions', 0, '12345', 67)"
                )
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO execution_events (stream_id, version, stream_type, "
                    "event_id, type, schema_version, data, metadata, occurred_at, hash) "
                    "VALUES (:stream, 1, 'system', :event, 'ArchiveReceipt', 1, :data, "
                    ":metadata, :occurred, :hash)"
                ).bindparams(
                    sa.bindparam("data", type_=schema.execution_events.c.data.type),
                    sa.bindparam(
                        "metadata", type_=schema.execution_events.c.metadata.type
                    ),
                    sa.bindparam(
                        "occurred", type_=schema.execution_events.c.occurred_at.type
                    ),
                    sa.bindparam("stream", type_=sa.Uuid()),
                    sa.bindparam("event", type_=sa.Uuid()),
                ),
                {
                    "stream": ARCHIVE_RECEIPTS_STREAM,
                    "event": event.event_id,
                    "data": event.data,
                    "metadata": event.metadata.as_json(),
                    "occurred": event.occurred_at,
                    "hash": chain_hash(
                        GENESIS_HASH, canonical_for(ARCHIVE_RECEIPTS_STREAM, 1, event)
                    ),
                },
            )
        store.backend.forget_schema()
        await store.migrate()
        async with store.backend.engine.connect() as connection:
            stored = (
                await connection.execute(
                    sa.select(
                        schema.projection_checkpoints.c.transaction_id,
                        schema.projection_checkpoints.c.position,
                    )
                )
            ).one()
        assert (int(stored[0]), stored[1]) == (12345, 67)
        assert await tombstones(store.backend) == {
            archived: (4, bytes.fromhex("c" * 64), "archive-old.jsonl.gz")
        }
        assert await verify_receipts(store.backend) == []
        assert (await verify_log(store.backend)).ok


async def test_upgrade_to_0007_keeps_leases_and_the_reaper_claims_them(
    empty_url: str,
) -> None:
    """Revision 0007 with leases in it: they stay unclaimed, heartbeats renew
    them, and the reaper claims and fails a stale one."""
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        refs = await make_references(store)
        stale, beating = uuid.uuid4(), uuid.uuid4()
        long_ago = datetime(2026, 1, 1, tzinfo=UTC)
        for execution_id in (stale, beating):
            await store.append(
                execution_id,
                [
                    NewEvent.of(
                        ExecutionCreated(
                            message_id=refs.message.id,
                            graph_id=refs.graph.id,
                            thread_id=refs.thread.id,
                        ),
                        occurred_at=long_ago,
                    ),
                    NewEvent.of(ExecutionStarted(worker_id="w"), occurred_at=long_ago),
                ],
                expected_version=0,
            )
        # The runs were written at head; the leases go in at 0006.
        await run_migration(store.backend, direction="downgrade", revision="0006")
        async with store.backend.engine.begin() as connection:
            for execution_id, at in (
                (stale, datetime(2026, 1, 1, tzinfo=UTC)),
                (beating, datetime(2026, 1, 2, tzinfo=UTC)),
            ):
                await connection.execute(
                    sa.text(
                        "INSERT INTO execution_leases (execution_id, worker_id, "
                        "heartbeat_at) VALUES (:id, 'w', :at)"
                    ).bindparams(
                        sa.bindparam("id", type_=sa.Uuid()),
                        sa.bindparam(
                            "at", type_=schema.execution_leases.c.heartbeat_at.type
                        ),
                    ),
                    {"id": execution_id, "at": at},
                )
        store.backend.forget_schema()
        await store.migrate()
        leases = Leases(store.backend)
        for execution_id in (stale, beating):
            lease = await leases.get(execution_id)
            assert lease is not None
            assert lease.reaped_at is None
        await store.executions.heartbeat(beating, worker_id="w")
        report = await reap(store, stale_after=timedelta(minutes=5))
        assert report.stale == [stale]
        claimed = await leases.get(stale)
        assert claimed is not None
        assert claimed.reaped_at is not None
        assert (await store.executions.get(beating)).status is ExecutionStatus.RUNNING


async def test_0008_fixes_stream_types_and_its_downgrade_restores_0006s_guard(
    empty_url: str,
) -> None:
    """Up and down: the guard function (PostgreSQL) or trigger (SQLite) of each revision."""
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        refs = await make_references(store)
        run = uuid.uuid4()
        created = NewEvent.of(
            ExecutionCreated(
                message_id=refs.message.id,
                graph_id=refs.graph.id,
                thread_id=refs.thread.id,
            )
        )
        await store.append(run, [created], expected_version=0)
        note = NewEvent(type="Note", data={})
        with pytest.raises(ValidationError, match="holds execution events"):
            await store.append(run, [note], stream_type="note")
        await run_migration(store.backend, direction="downgrade", revision="0007")
        assert not await _guards_stream_types(store)
        await run_migration(store.backend, direction="upgrade", revision="head")
        store.backend.forget_schema()
        assert await _guards_stream_types(store)
        with pytest.raises(ValidationError, match="holds execution events"):
            await store.append(run, [note], stream_type="note")
        started = NewEvent.of(ExecutionStarted(worker_id="w"))
        await store.append(run, [started], expected_version=1)
        assert (await store.executions.get(run)).status is ExecutionStatus.RUNNING
        assert await drift_of(store) == []


async def _guards_stream_types(store: EventStore) -> bool:
    """Whether 0008's check is in the database (PostgreSQL's function, SQLite's trigger)."""
    sql = (
        "SELECT count(*) FROM pg_proc WHERE proname = 'eventstore_guard_append' "
        "AND prosrc LIKE '%ZE009%'"
        if store.backend.name == "postgresql"
        else "SELECT count(*) FROM sqlite_master "
        "WHERE name = 'execution_events_guard_stream_type'"
    )
    async with store.backend.engine.connect() as connection:
        return bool(await connection.scalar(sa.text(sql)))


async def test_upgrade_to_0009_keeps_the_projected_rows(empty_url: str) -> None:
    """SQLite copies the executions table to retype three columns: rows stay."""
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        refs = await make_references(store)
        runs = [
            await store.executions.create(
                message_id=refs.message.id, graph_id=refs.graph.id, inputs=value
            )
            for value in (42, "text", {"a": [1, 2.5]}, None, 10**30)
        ]
        await store.executions.fail(runs[0], error={"type": "E", "message": "m"})
        await project_everything(store)
        before = await all_rows(store)
        await run_migration(store.backend, direction="downgrade", revision="0008")
        store.backend.forget_schema()
        await run_migration(store.backend, direction="upgrade", revision="head")
        store.backend.forget_schema()
        after = await all_rows(store)
        assert set(after) == set(runs)
        for run in runs[:4]:  # exact through 0008's NUMERIC column as well
            assert after[run] == before[run]
        assert await drift_of(store) == []


async def test_upgrade_to_0010_fills_first_steps_and_empty_labels(
    empty_url: str,
) -> None:
    """Runs projected before labels read with none, and with their first step's time."""
    async with EventStore.open(empty_url) as store:
        await store.migrate()
        refs = await make_references(store)
        runs = [
            await store.executions.create(
                message_id=refs.message.id, graph_id=refs.graph.id
            )
            for _ in range(3)
        ]
        await store.executions.start(runs[0], worker_id="w")
        await store.executions.start(runs[1], worker_id="w")
        for step in ("plan", "write", "check"):
            await store.executions.progress(runs[1], step=step)
        await store.executions.complete(runs[1], result=1)
        await project_everything(store)
        await run_migration(store.backend, direction="downgrade", revision="0009")
        store.backend.forget_schema()
        await run_migration(store.backend, direction="upgrade", revision="head")
        store.backend.forget_schema()
        rows = await all_rows(store)
        assert {run: rows[run].labels for run in runs} == {run: {} for run in runs}
        history = await store.executions.history(runs[1])
        assert rows[runs[1]].first_step_at == history[2].occurred_at
        assert rows[runs[0]].first_step_at is None
        for run in runs:
            assert rows[run] == await store.executions.get(run)
        # The guard of 0010 takes a label on a finished run.
        state = await store.executions.label(runs[1], set={"after": "upgrade"})
        assert state.status is ExecutionStatus.COMPLETED
        assert await drift_of(store) == []
