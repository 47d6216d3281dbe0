"""PostgreSQL leadership: session advisory locks on a dedicated connection.

The server releases a session lock when its connection ends, so a leader
killed by SIGKILL (or cut off by the network, once the server notices)
frees its slots. Operators find projectors in pg_stat_activity by their
application_name, ``eventstore-projector host:pid``. Session locks do not
survive a PgBouncer in transaction mode: point projectors at PostgreSQL.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

import asyncpg
from sqlalchemy.engine import make_url
from typing_extensions import override

from eventstore import errors
from eventstore.backends.leadership import (
    PROJECTOR_APPLICATION,
    Holder,
    HorizonHolder,
    LeaderLocks,
    process_identity,
)
from eventstore.backends.postgres_namespace import lock_key_sql

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

# One 64-bit advisory lock key per slot, from its name.
KEY_SQL: Final = lock_key_sql("projection", "$1")
# Each process holds a shared advisory lock per group it runs (shared locks
# never wait for each other); the holders of that key are the group's members.
JOIN_SQL: Final = (
    f"SELECT pg_try_advisory_lock_shared({lock_key_sql('projection-group', 'g')}) "  # noqa: S608 - constant key expressions
    "FROM unnest($1::text[]) AS g"
)
# pg_locks splits a bigint key into classid (high half) and objid (low half).
MEMBERS_SQL: Final = f"""
SELECT g, count(l.pid)
FROM unnest($1::text[]) AS g
LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.mode = 'ShareLock'
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint)
        = {lock_key_sql("projection-group", "g")}
GROUP BY g
"""  # noqa: S608 - constant key expressions
HOLDERS_SQL: Final = f"""
SELECT s.slot, a.application_name, a.pid, a.backend_start
FROM unnest($1::text[]) AS s(slot)
JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint)
        = {lock_key_sql("projection", "s.slot")}
JOIN pg_stat_activity a ON a.pid = l.pid
"""  # noqa: S608 - constant key expressions
# A projection's gate (docs/PROJECTIONS.md, "Lock order"): a rebuild holds
# it exclusively while it swaps the projection's table in; every projector
# transaction on the projection enters it shared, first. Transaction-level,
# so the server frees it at commit, at rollback, and when a session dies. A
# rebuild waiting for it already turns new entrants away (PostgreSQL queues
# a lock request behind the waiters it conflicts with), so batches cannot
# starve it.
GATE_KEY_SQL: Final = lock_key_sql("projection-gate", "$1")
ENTER_GATE_SQL: Final = f"SELECT pg_try_advisory_xact_lock_shared({GATE_KEY_SQL})"
HOLD_GATE_SQL: Final = f"SELECT pg_advisory_xact_lock({GATE_KEY_SQL})"
GATE_HOLDERS_SQL: Final = f"""
SELECT DISTINCT ON (p.projection) p.projection, a.application_name, a.pid,
    a.xact_start
FROM unnest($1::text[]) AS p(projection)
JOIN pg_locks l ON l.locktype = 'advisory' AND l.objsubid = 1
    AND l.mode = 'ExclusiveLock'
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint)
        = {lock_key_sql("projection-gate", "p.projection")}
JOIN pg_stat_activity a ON a.pid = l.pid
ORDER BY p.projection, l.granted DESC
"""  # noqa: S608 - constant key expressions
HORIZON_SQL: Final = """
SELECT pid, datname, state, extract(epoch FROM clock_timestamp() - xact_start),
    left(query, 200)
FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
ORDER BY age(backend_xid) DESC
LIMIT 1
"""


class PostgresLeaderLocks(LeaderLocks):
    """Advisory locks held on one connection of their own."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float,
        server_settings: Mapping[str, str],
    ) -> None:
        self._dsn = dsn
        self._timeout = connect_timeout
        self._connection: asyncpg.Connection | None = None
        self._identity = f"{PROJECTOR_APPLICATION} {process_identity()}"[:63]
        self._server_settings = {**server_settings, "application_name": self._identity}
        self._joined: set[str] = set()  # groups joined on the current connection

    async def _connected(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._joined = set()  # a new session holds no membership yet
            with self._unavailable():
                self._connection = await asyncpg.connect(
                    self._dsn,
                    timeout=self._timeout,
                    server_settings=self._server_settings,
                )
        return self._connection

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """A lost or refused lock connection is the store's DatabaseUnavailable."""
        try:
            yield
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ) as exc:
            if self._connection is not None:
                # Never leave a session behind that may still hold locks.
                self._connection.terminate()
            self._connection = None
            self._joined = set()
            raise errors.DatabaseUnavailable(
                url=make_url(self._dsn).render_as_string(hide_password=True),
                reason=f"the projector's lock connection: {exc}".splitlines()[0],
            ) from exc

    @override
    async def try_acquire(self, slot: str) -> bool:
        connection = await self._connected()
        with self._unavailable():
            acquired: bool = await connection.fetchval(
                f"SELECT pg_try_advisory_lock({KEY_SQL})", slot
            )
        return acquired

    @override
    async def release(self, slot: str) -> None:
        if self._connection is not None and not self._connection.is_closed():
            with self._unavailable():
                await self._connection.fetchval(
                    f"SELECT pg_advisory_unlock({KEY_SQL})",
                    slot,
                )

    @override
    async def alive(self) -> bool:
        if self._connection is None or self._connection.is_closed():
            self._connection = None
            return False
        try:
            await self._connection.fetchval("SELECT 1", timeout=self._timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            await self._drop()
            return False
        return True

    @override
    async def members(self, groups: Sequence[str]) -> dict[str, int]:
        connection = await self._connected()
        with self._unavailable():
            joining = [group for group in groups if group not in self._joined]
            if joining:
                await connection.execute(JOIN_SQL, joining)
                self._joined.update(joining)
            rows = await connection.fetch(MEMBERS_SQL, list(groups))
        return {row[0]: int(row[1]) for row in rows}

    @override
    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()  # ends the session: every lock goes
        self._connection = None
        self._joined = set()

    async def _drop(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
        self._connection = None
        self._joined = set()


async def slot_holders(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], slots: Sequence[str]
) -> dict[str, Holder]:
    """Who holds each slot's lock now (slots nobody holds are left out)."""
    rows = await connection.fetch(HOLDERS_SQL, list(slots))
    return {
        row["slot"]: Holder(
            identity=str(row["application_name"]).removeprefix(
                f"{PROJECTOR_APPLICATION} "
            ),
            pid=row["pid"],
            since=row["backend_start"],
        )
        for row in rows
    }


async def gate_holders(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
    projections: Sequence[str],
) -> dict[str, Holder]:
    """Who holds, or waits to hold, each projection's gate (the others are left out)."""
    rows = await connection.fetch(GATE_HOLDERS_SQL, list(projections))
    return {
        row["projection"]: Holder(
            # The store's connections are named ``eventstore host:pid``.
            identity=str(row["application_name"]).partition(" ")[2]
            or str(row["application_name"]),
            pid=row["pid"],
            since=row["xact_start"],
        )
        for row in rows
    }


async def horizon_holder(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
) -> HorizonHolder | None:
    """The oldest transaction with an id, server-wide: it holds read_all back."""
    row = await connection.fetchrow(HORIZON_SQL)
    if row is None:
        return None
    # Without pg_read_all_stats, another role's session shows no xact_start
    # (nor state or query): the age is unknown, not 0.
    return HorizonHolder(
        pid=row[0],
        database=row[1],
        state=row[2],
        age_seconds=None if row[3] is None else float(row[3]),
        query=row[4],
    )
