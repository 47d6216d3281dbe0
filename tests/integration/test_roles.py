"""docs/ROLES.md's table, line by line: each operation as a login of each role.

A deployment as ROLES.md describes it: a non-superuser owner owns the
database, migrates and applies docs/roles.sql; an application login and an
archivist login are members of the two group roles. Each test logs in as one
of the three, runs every line of the table and compares what happened with
the table's own cell, read from ROLES.md: "yes" must run (and do its work),
"no" must be refused by the database with one of the cell's *italic*
messages, as the store's own error class, leaving the database and the
archive directory as they were.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from eventstore import (
    AppendOnlyViolation,
    DatabaseError,
    EventStore,
    EventStoreError,
    ExecutionStatus,
    InvalidTransition,
    ValidationError,
)
from eventstore.audit import VerifyRun
from eventstore.audit.anchors import create_anchor, verify_anchors
from eventstore.audit.archive_reading import verify_archive
from eventstore.audit.archiving import archive_finished_before
from eventstore.audit.integrity import verify_log
from eventstore.audit.replay import AsOf, statuses_as_of, verify_stream
from eventstore.events.system_payloads import ARCHIVE_RECEIPTS_STREAM
from eventstore.migrating import SCHEMA_HEAD, run_migration
from eventstore.reaper import reap
from projections import (
    ExecutionsProjection,
    ExecutionsView,
    execution_stats,
    projection_status,
    run_rebuild,
)
from projections.verify import verify_executions
from tests.conftest import ADMIN_URL, SERVER
from tests.helpers import (
    execution_in,
    make_references,
    project_everything,
    raw_pg,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

pytestmark = pytest.mark.postgres

DOCS: Final = Path(__file__).parents[2] / "docs"
ROLES_MD: Final = DOCS / "ROLES.md"
ROLES_SQL: Final = DOCS / "roles.sql"
ROLES: Final = ("app", "archivist", "owner")
HEADER: Final = ["", "`eventstore_app`", "`eventstore_archivist`", "owner"]
KEY: Final = b"the operator's anchor key"
# A refusal: for want of privilege, or by the log's immutability trigger,
# raised by the store as its own class (raw SQL: the driver's error).
REFUSALS: Final[dict[str, type[EventStoreError]]] = {
    "42501": DatabaseError,
    "ZE001": AppendOnlyViolation,
    "ZE002": InvalidTransition,
    "ZE003": ValidationError,
}
SNAPSHOT_SQL: Final = (
    "SELECT count(*), coalesce(max(position), 0) FROM execution_events",
    "SELECT id, version FROM executions ORDER BY id",
    "SELECT execution_id, heartbeat_at FROM execution_leases ORDER BY 1",
    "SELECT name, partition, position FROM projection_checkpoints ORDER BY 1, 2",
    "SELECT count(*) FROM execution_events_archive_guard",
    "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public' "
    "ORDER BY 1",
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    "SELECT tgname, tgenabled FROM pg_trigger "
    "WHERE tgrelid = 'execution_events'::regclass AND NOT tgisinternal ORDER BY 1",
    "SELECT version_num FROM eventstore_alembic_version",
)

Outcome: TypeAlias = str | None  # None: it ran; else the refusal's message
Check: TypeAlias = "Callable[[Deployment, str], Awaitable[list[Outcome]]]"


class _Rollback(Exception):
    """Raised to roll a probing transaction back once its statements ran."""


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, through the store's and SQLAlchemy's wrappers."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlstate", None)
        if isinstance(code, str):
            return code
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


@dataclass
class Deployment:
    """One store's database with a login of each role; `admin` looks behind their backs."""

    admin: str
    logins: dict[str, str]
    workdir: Path

    def store(self, role: str) -> AbstractAsyncContextManager[EventStore]:
        """An open store, logged in as `role`."""
        return EventStore.open(self.logins[role])

    async def deploy(self) -> None:
        """What the owner does at every deployment: migrate, then apply roles.sql."""
        async with self.store("owner") as store:
            await store.migrate()
        connection = await raw_pg(self.logins["owner"])
        try:
            await connection.execute(ROLES_SQL.read_text())
        finally:
            await connection.close()

    async def sql(self, role: str, *statements: str, commit: bool) -> None:
        """Run statements as `role` in one transaction; roll back unless `commit`."""
        connection = await raw_pg(self.logins[role])
        try:
            async with connection.transaction():
                for statement in statements:
                    await connection.execute(statement)
                if not commit:
                    raise _Rollback
        except _Rollback:
            pass
        finally:
            await connection.close()

    async def snapshot(self) -> list[object]:
        """Everything a refused operation must leave as it was."""
        connection = await raw_pg(self.admin)
        try:
            state: list[object] = [
                [tuple(row) for row in await connection.fetch(query)]
                for query in SNAPSHOT_SQL
            ]
        finally:
            await connection.close()
        state.append(sorted(str(p) for p in self.workdir.rglob("*")))
        return state

    async def attempt(self, operation: Callable[[], Awaitable[None]]) -> Outcome:
        """Run `operation`: None when it ran, else the refusal's message."""
        before = await self.snapshot()
        refusal: EventStoreError | asyncpg.PostgresError
        try:
            await operation()
        except (EventStoreError, asyncpg.PostgresError) as exc:
            if _sqlstate(exc) not in REFUSALS:
                raise
            refusal = exc
        else:
            return None
        if isinstance(refusal, EventStoreError):
            code = _sqlstate(refusal)
            assert code is not None
            assert type(refusal) is REFUSALS[code], repr(refusal)
        assert await self.snapshot() == before, f"refused, but wrote: {refusal}"
        return str(refusal)


@pytest.fixture
async def deployment(empty_pg_url: str, tmp_path: Path) -> AsyncIterator[Deployment]:
    """ROLES.md's set-up on a database of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    users = {role: f"{role}_{suffix}" for role in ROLES}
    database = make_url(empty_pg_url).database
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        # Once, as a DBA: the group roles (the cluster may have them already),
        # the owner of the database, and the logins.
        for group, parent in (
            ("eventstore_app", ""),
            ("eventstore_archivist", " IN ROLE eventstore_app"),
        ):
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_roles WHERE rolname = $1", group
            ):
                await admin.execute(f"CREATE ROLE {group} NOLOGIN{parent}")
        await admin.execute(f"CREATE ROLE {users['owner']} LOGIN")
        await admin.execute(f"ALTER DATABASE {database} OWNER TO {users['owner']}")
        await admin.execute(f"CREATE ROLE {users['app']} LOGIN IN ROLE eventstore_app")
        await admin.execute(
            f"CREATE ROLE {users['archivist']} LOGIN IN ROLE eventstore_archivist"
        )
        logins = {
            role: make_url(empty_pg_url)
            .set(username=user)
            .render_as_string(hide_password=False)
            for role, user in users.items()
        }
        found = Deployment(admin=empty_pg_url, logins=logins, workdir=tmp_path)
        await found.deploy()
        yield found
    finally:
        await SERVER.drop(str(database))
        for user in users.values():
            await admin.execute(f"DROP ROLE IF EXISTS {user}")
        await admin.close()


def roles_table() -> dict[str, dict[str, str]]:
    """ROLES.md's table: each line's cell per role."""
    lines = ROLES_MD.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| |"))
    table: dict[str, dict[str, str]] = {}
    for number, line in enumerate(lines[start:]):
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if number == 0:
            assert cells == HEADER
        elif number > 1:
            assert len(cells) == len(HEADER), line
            table[cells[0]] = dict(zip(ROLES, cells[1:], strict=True))
    return table


LINES: dict[str, Check] = {}


def line(label: str) -> Callable[[Check], Check]:
    """Register the check of one line of the table (in the order they run)."""

    def register(check: Check) -> Check:
        LINES[label] = check
        return check

    return register


@line("append, read, lifecycle commands, heartbeats")
async def _lifecycle(d: Deployment, role: str) -> list[Outcome]:
    async def operation() -> None:
        async with d.store(role) as store:
            executions = store.executions
            refs = await make_references(store)
            run = await execution_in(store, refs, ExecutionStatus.RUNNING)
            await executions.progress(run, step="plan", metrics={"prompt_tokens": 3})
            state = await executions.heartbeat(run, worker_id="worker-1")
            assert state.status is ExecutionStatus.RUNNING
            await executions.complete(run, result={"ok": True})
            failed = await execution_in(store, refs, ExecutionStatus.FAILED)
            again = await executions.retry(failed)
            await executions.request_cancel(again, reason="no longer needed")
            assert (await executions.get(again)).status is ExecutionStatus.CANCELLED
            versions = [event.version async for event in store.read_stream(run)]
            assert versions == [1, 2, 3, 4]

    return [await d.attempt(operation)]


@line("`project` (the projector, `--status`), `stats`, the executions view")
async def _project(d: Deployment, role: str) -> list[Outcome]:
    async with d.store("owner") as store:
        refs = await make_references(store)
        done = await execution_in(store, refs, ExecutionStatus.COMPLETED)

    async def operation() -> None:
        async with d.store(role) as store:
            await project_everything(store)
            row = await ExecutionsView(store).get(done)
            assert row.status is ExecutionStatus.COMPLETED
            status = await projection_status(store)
            assert "executions" in {slot.projection for slot in status.slots}
            stats = await execution_stats(store)
            assert stats.counts[ExecutionStatus.COMPLETED] >= 1

    return [await d.attempt(operation)]


@line(
    "`cleanup --stale-after/--pending-after` (appends `ExecutionFailed`, "
    "deletes leases)"
)
async def _reap(d: Deployment, role: str) -> list[Outcome]:
    async with d.store("owner") as store:
        refs = await make_references(store)
        running = await execution_in(store, refs, ExecutionStatus.RUNNING)
        await store.executions.heartbeat(running, worker_id="worker-1")
        pending = await execution_in(store, refs, ExecutionStatus.PENDING)
        await project_everything(store)
    await asyncio.sleep(0.1)
    quiet = timedelta(milliseconds=50)

    async def operation() -> None:
        async with d.store(role) as store:
            report = await reap(store, stale_after=quiet, pending_after=quiet)
            assert running in report.stale
            assert pending in report.expired_pending
            for execution_id in (running, pending):
                state = await store.executions.get(execution_id)
                assert state.status is ExecutionStatus.FAILED
                assert state.error is not None
                assert state.error["type"] == "Timeout"
                history = await store.executions.history(execution_id)
                assert history[-1].metadata.actor == "reaper"
        connection = await raw_pg(d.admin)
        try:
            claimed = await connection.fetchval(
                "SELECT reaped_at IS NOT NULL FROM execution_leases "
                "WHERE execution_id = $1",
                running,
            )
        finally:
            await connection.close()
        assert claimed  # kept, so a late heartbeat is refused

    return [await d.attempt(operation)]


@line("`anchor` (appends to the anchors' system stream)")
async def _anchor(d: Deployment, role: str) -> list[Outcome]:
    async def operation() -> None:
        async with d.store(role) as store:
            anchor = await create_anchor(store, key=KEY)
            assert anchor.hmac is not None
            report = await verify_anchors(store.backend, key=KEY)
            assert report.ok
            assert report.anchors == report.signatures_checked >= 1

    return [await d.attempt(operation)]


@line(
    "a system-stream row by hand (a forged receipt or anchor, `INSERT` without the "
    "guard row)"
)
async def _forge_a_system_row(d: Deployment, role: str) -> list[Outcome]:
    async def operation() -> None:
        await d.sql(
            role,
            "INSERT INTO execution_events (stream_id, version, stream_type, event_id, "
            "type, schema_version, data, metadata, occurred_at, hash) VALUES "
            f"('{ARCHIVE_RECEIPTS_STREAM}', 1, 'system', gen_random_uuid(), "
            "'ArchiveReceipt', 1, '{}', '{}', now(), '\\x00')",
            commit=True,
        )

    return [await d.attempt(operation)]


@line(
    "an event by hand with its own `recorded_at`, `transaction_id` and `epoch` "
    "(`INSERT`)"
)
async def _backdate(d: Deployment, role: str) -> list[Outcome]:
    async with d.store("owner") as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)

    async def operation() -> None:
        # Rolled back: the row's hash is not a chain's, only its stamps matter.
        connection = await raw_pg(d.logins[role])
        try:
            async with connection.transaction():
                row = await connection.fetchrow(
                    "INSERT INTO execution_events (stream_id, version, stream_type, "
                    "event_id, type, schema_version, data, metadata, occurred_at, "
                    "hash, recorded_at, transaction_id, epoch) VALUES ($1, 3, "
                    "'execution', gen_random_uuid(), 'ExecutionProgressed', 1, "
                    "'{\"step\": \"s\"}', '{}', now(), '\\x00', '2020-01-01', "
                    "'5', 9) RETURNING recorded_at, "
                    "transaction_id::text::bigint AS xid, epoch",
                    run,
                )
                assert row is not None
                assert row["recorded_at"].year > 2020
                assert row["xid"] > 5
                assert row["epoch"] == 0
                raise _Rollback
        except _Rollback:
            pass
        finally:
            await connection.close()

    return [await d.attempt(operation)]


@line(
    "an event by hand against the lifecycle (`INSERT` of `ExecutionStarted` after "
    "`ExecutionCompleted`)"
)
async def _against_the_lifecycle(d: Deployment, role: str) -> list[Outcome]:
    async with d.store("owner") as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.COMPLETED)

    async def operation() -> None:
        await d.sql(
            role,
            "INSERT INTO execution_events (stream_id, version, stream_type, event_id, "
            "type, schema_version, data, metadata, occurred_at, hash) VALUES "
            f"('{run}', 4, 'execution', gen_random_uuid(), 'ExecutionStarted', 1, "
            "'{\"worker_id\": \"w\"}', '{}', now(), '\\x00')",
            commit=True,
        )

    return [await d.attempt(operation)]


@line("`verify` (chains, anchors, projection)")
async def _verify(d: Deployment, role: str) -> list[Outcome]:
    async with d.store("owner") as store:
        await project_everything(store)

    async def operation() -> None:
        async with d.store(role) as store:
            log = await verify_log(store.backend)
            assert log.ok
            assert log.events > 0
            assert (await verify_anchors(store.backend, key=KEY)).ok
            assert await verify_executions(store) == []
            # What it found is kept for the console's /system page.
            now = datetime.now(UTC)
            found = VerifyRun(
                now, now, log.events, log.streams, projection_checked=True, problems=0
            )
            await store.audit.record_verify_run(found)
            assert await store.audit.last_verify_run() == found

    return [await d.attempt(operation)]


@line("`audit` (an execution, store-wide `--as-of`, `--html`, `--export`, `--archive`)")
async def _audit(d: Deployment, role: str) -> list[Outcome]:
    directory = d.workdir / "audited"
    directory.mkdir()
    async with d.store("owner") as store:
        refs = await make_references(store)
        archived = await execution_in(store, refs, ExecutionStatus.COMPLETED)
        await project_everything(store)
        result = await archive_finished_before(
            store, datetime.now(UTC) + timedelta(minutes=1), directory
        )
        assert result is not None
        live = await execution_in(store, refs, ExecutionStatus.RUNNING)

    async def operation() -> None:
        async with d.store(role) as store:
            history = await store.executions.history(live)  # the timeline, --html
            assert [event.type for event in history] == [
                "ExecutionCreated",
                "ExecutionStarted",
            ]
            await verify_stream(store.backend, live)  # --verify
            await store.backend.ensure_schema()
            assert len(await store.backend.read_stream_as_stored(live)) == 2  # --export
            statuses = await statuses_as_of(
                store.backend, AsOf(position=history[-1].position)
            )
            assert (live, ExecutionStatus.RUNNING) in {
                (status.execution_id, status.status) for status in statuses
            }
            verified = await verify_archive(store, result.data_path)  # --archive
            assert verified.history(archived)[-1].type == "ExecutionCompleted"

    return [await d.attempt(operation)]


@line("`cleanup --archive-before` (the archive path)")
async def _archive(d: Deployment, role: str) -> list[Outcome]:
    directory = d.workdir / "archives"
    directory.mkdir()
    async with d.store("owner") as store:
        refs = await make_references(store)
        done = await execution_in(store, refs, ExecutionStatus.COMPLETED)
        await project_everything(store)

    async def operation() -> None:
        async with d.store(role) as store:
            result = await archive_finished_before(
                store, datetime.now(UTC) + timedelta(minutes=1), directory
            )
            assert result is not None
            assert done in {stream.stream_id for stream in result.manifest.streams}
            assert await store.backend.read_stream_as_stored(done) == []
            await verify_archive(store, result.data_path)

    return [await d.attempt(operation)]


@line("the archive path by hand (guard row, then `DELETE`)")
async def _archive_by_hand(d: Deployment, role: str) -> list[Outcome]:
    async with d.store("owner") as store:
        refs = await make_references(store)
        victim = await execution_in(store, refs, ExecutionStatus.COMPLETED)
        await wait_for_horizon(store)  # another test's transaction may hold it back
        anchor = await create_anchor(store, key=KEY)
        assert victim in {head.stream_id for head in anchor.heads}

    async def operation() -> None:
        await d.sql(
            role,
            "INSERT INTO execution_events_archive_guard VALUES (1, 'by hand')",
            f"DELETE FROM execution_events WHERE stream_id = '{victim}'",
            "DELETE FROM execution_events_archive_guard",
            commit=True,
        )
        async with d.store("owner") as store:
            report = await verify_anchors(store.backend, key=KEY)
        assert [problem.stream_id for problem in report.problems] == [victim]
        assert "missing" in report.problems[0].reason

    return [await d.attempt(operation)]


@line("`rebuild`")
async def _rebuild(d: Deployment, role: str) -> list[Outcome]:
    async with d.store("owner") as store:
        await project_everything(store)

    async def operation() -> None:
        async with d.store(role) as store:
            report = await run_rebuild(
                store, ExecutionsProjection(store.backend), batch_size=7
            )
            assert report.swapped
            assert await verify_executions(store) == []
        # The swap carried the grants over: the services keep projecting.
        async with d.store("app") as store:
            refs = await make_references(store)
            fresh = await execution_in(store, refs, ExecutionStatus.PENDING)
            await project_everything(store)
            row = await ExecutionsView(store).get(fresh)
            assert row.status is ExecutionStatus.PENDING

    return [await d.attempt(operation)]


@line("`migrate` (a revision to apply)")
async def _migrate(d: Deployment, role: str) -> list[Outcome]:
    async with d.store("owner") as store:
        await run_migration(store.backend, direction="downgrade", revision="-1")
        assert await store.schema_revision() != SCHEMA_HEAD

    async def operation() -> None:
        async with d.store(role) as store:
            await store.migrate()
            assert await store.schema_revision() == SCHEMA_HEAD

    outcome = await d.attempt(operation)
    await d.deploy()
    async with d.store(role) as store:  # at the head, any role's migrate is a no-op
        await store.migrate()
        assert await store.schema_revision() == SCHEMA_HEAD
    return [outcome]


@line("`UPDATE`/`DELETE`/`TRUNCATE` on the log outside the archive path")
async def _change_the_log(d: Deployment, role: str) -> list[Outcome]:
    outcomes = []
    for statement in (
        "UPDATE execution_events SET type = 'Forged'",
        "DELETE FROM execution_events",
        "TRUNCATE execution_events",
    ):

        async def operation(statement: str = statement) -> None:
            await d.sql(role, statement, commit=False)

        outcomes.append(await d.attempt(operation))
    return outcomes


@line("disable the triggers")
async def _disable_the_triggers(d: Deployment, role: str) -> list[Outcome]:
    async def operation() -> None:
        await d.sql(
            role, "ALTER TABLE execution_events DISABLE TRIGGER USER", commit=False
        )

    return [await d.attempt(operation)]


def test_the_table_has_a_check_for_every_line() -> None:
    assert list(roles_table()) == list(LINES)


@pytest.mark.parametrize("role", ROLES)
async def test_every_line_of_the_roles_table(deployment: Deployment, role: str) -> None:
    table = roles_table()
    assert list(table) == list(LINES)
    for label, check in LINES.items():
        cell = table[label][role]
        outcomes = await check(deployment, role)
        if cell.startswith("yes"):
            assert outcomes == [None] * len(outcomes), (label, role, outcomes)
        else:
            assert cell.startswith("no"), cell
            reasons = re.findall(r"\*([^*]+)\*", cell)
            assert reasons, f"{label}: a refusal names its error in *italics*"
            for outcome in outcomes:
                assert outcome is not None, f"{label}: {role} was not refused"
                assert any(reason in outcome for reason in reasons), (
                    label,
                    role,
                    outcome,
                )
