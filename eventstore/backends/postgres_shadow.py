"""PostgreSQL shadow tables: the DDL of the zero-downtime rebuild (ARCHITECTURE §5).

The shadow is created ``LIKE`` the live table, so its columns, types,
defaults, NOT NULL and CHECK constraints are the live table's own (a
cached plan revalidated after the swap keeps its result type). The primary
key and unique constraints come at once (the upserts need them) under
shadow names. Plain indexes come after the bulk load (`finish`), which is
cheaper than maintaining them row by row and lets the load update rows in
place (HOT); so do the foreign keys (they keep their names, which are
unique per table only), each checked in one pass; then ANALYZE of the
indexed columns, so the first queries after the swap are planned on
statistics (`finish`).

The swap runs in the caller's transaction: take the live table ACCESS
EXCLUSIVE, rename it and its indexes out of the way, rename the shadow and
its indexes to the canonical names, carry the privileges and the owner
over. Readers queue for that instant only; a reader waiting on the old
table finds the new one when it gets the lock (PostgreSQL looks the name up
again after waiting). Lock waits are bounded by `lock_timeout` and retried
from a savepoint, so one long reader cannot make every other reader queue
behind the swap: https://www.postgresql.org/docs/current/explicit-locking.html

Foreign keys of other tables that reference the live table (a service's
own table pointing at ``executions``) follow a table by its OID, so the
swap moves each to the new table: dropped and added again ``NOT VALID``
in the swap's transaction (no scan while readers queue), then validated
after the commit (`validate`), which locks neither table against writes.

The retired table is dropped in a transaction of its own: dropping its
foreign keys takes ACCESS EXCLUSIVE locks on the referenced tables
(messages, graphs, threads), which the swap must not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING, Final, Protocol

import asyncpg
from typing_extensions import override

from eventstore import errors
from eventstore.backends.postgres_driver import driver_connection
from eventstore.backends.postgres_namespace import lock_key_sql
from eventstore.backends.shadow import Reference, ShadowTables

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from asyncpg.pool import PoolConnectionProxy
    from sqlalchemy.ext.asyncio import AsyncConnection


MAX_IDENTIFIER: Final = 63  # NAMEDATALEN - 1: longer names are cut silently
TRANSIENT: Final = (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)
LOCK_SQL: Final = f"SELECT pg_try_advisory_lock({lock_key_sql('rebuild', '$1')})"
UNLOCK_SQL: Final = f"SELECT pg_advisory_unlock({lock_key_sql('rebuild', '$1')})"
# Indexes of a table, with the constraint each one backs (primary key,
# unique, exclusion), if any.
INDEXES_SQL: Final = """
SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition,
       pg_get_constraintdef(c.oid) AS constraint_definition
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint c
    ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
    AND c.contype IN ('p', 'u', 'x')
WHERE x.indrelid = to_regclass($1)
ORDER BY i.relname
"""
# The columns the live table's indexes cover (an expression's attnum is 0).
INDEXED_COLUMNS_SQL: Final = """
SELECT DISTINCT a.attname AS name
FROM pg_index x
JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey)
WHERE x.indrelid = to_regclass($1)
ORDER BY 1
"""
FOREIGN_KEYS_SQL: Final = """
SELECT conname AS name, pg_get_constraintdef(oid) AS definition
FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f'
ORDER BY conname
"""
# Other tables' foreign keys to a table; read before the swap's renames, so
# the definitions name the table by its canonical name.
REFERENCING_KEYS_SQL: Final = """
SELECT conrelid::regclass::text AS referencing, conname AS name,
       pg_get_constraintdef(oid) AS definition, convalidated AS validated
FROM pg_constraint
WHERE confrelid = to_regclass($1) AND contype = 'f' AND conrelid <> confrelid
ORDER BY conrelid, conname
"""
NOT_VALID: Final = " NOT VALID"
COLUMNS_SQL: Final = """
SELECT attname, format_type(atttypid, atttypmod), attnotnull
FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
ORDER BY attnum
"""
GRANTS_SQL: Final = """
SELECT coalesce(quote_ident(r.rolname), 'PUBLIC') AS grantee,
       a.privilege_type, a.is_grantable
FROM pg_class c
CROSS JOIN LATERAL aclexplode(c.relacl) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE c.oid = to_regclass($1) AND a.grantee <> c.relowner
"""
OWNER_SQL: Final = (
    "SELECT quote_ident(pg_get_userbyid(relowner)) FROM pg_class "
    "WHERE oid = to_regclass($1)"
)
# pg_get_indexdef's fixed form: CREATE [UNIQUE] INDEX name ON [ONLY] table USING ...
INDEX_DEFINITION: Final = re.compile(
    r"^CREATE (?P<unique>UNIQUE )?INDEX (?P<name>\S+) ON (?:ONLY )?(?P<table>\S+) "
    r"(?P<rest>USING .+)$",
    re.DOTALL,
)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _suffixed(name: str, suffix: str) -> str:
    named = name + suffix
    if len(named.encode()) > MAX_IDENTIFIER:
        raise errors.ConfigurationError(
            f"cannot rebuild beside {name!r}: {named!r} is longer than "
            f"{MAX_IDENTIFIER} bytes"
        )
    return named


class PoolOwner(Protocol):
    """What the rebuild lock needs of the backend: its pool and its error translation."""

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool of the hot path."""
        ...

    def translate_errors(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Re-raise driver errors as the store's own."""
        ...


class PostgresShadowTables(ShadowTables):
    """Shadow tables on PostgreSQL; the lock is a session advisory lock."""

    def __init__(self, backend: PoolOwner) -> None:
        self._backend = backend

    @override
    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[bool]:
        # A session lock on a connection held for the whole rebuild: the
        # server frees it if this process dies, even by SIGKILL.
        backend = self._backend
        async with backend.translate_errors():
            connection = await backend.pool.acquire()
        try:
            async with backend.translate_errors():
                taken = bool(await connection.fetchval(LOCK_SQL, name))
            try:
                yield taken
            finally:
                if taken:
                    await _unlock_or_close(connection, name)
        finally:
            await backend.pool.release(connection)

    @override
    async def exists(self, connection: AsyncConnection, table: str) -> bool:
        driver = await driver_connection(connection)
        return bool(await driver.fetchval("SELECT to_regclass($1) IS NOT NULL", table))

    @override
    async def create(self, connection: AsyncConnection, live: str) -> None:
        driver = await driver_connection(connection)
        shadow = self.shadow_name(live)
        await driver.execute(
            f"CREATE TABLE {_quote(shadow)} "
            f"(LIKE {_quote(live)} INCLUDING ALL EXCLUDING INDEXES)"
        )
        for index in await driver.fetch(INDEXES_SQL, live):
            if index["constraint_definition"] is not None:
                name = _suffixed(index["name"], self.SHADOW_SUFFIX)
                await driver.execute(
                    f"ALTER TABLE {_quote(shadow)} ADD CONSTRAINT {_quote(name)} "
                    f"{index['constraint_definition']}"
                )

    @override
    async def finish(self, connection: AsyncConnection, live: str) -> None:
        driver = await driver_connection(connection)
        shadow = self.shadow_name(live)
        await self._add_foreign_keys(driver, live, shadow)
        for index in await driver.fetch(INDEXES_SQL, live):
            if index["constraint_definition"] is not None:
                continue
            parsed = INDEX_DEFINITION.match(index["definition"])
            if parsed is None:
                raise errors.DatabaseError(
                    f"cannot copy index {index['name']}: {index['definition']}"
                )
            name = _suffixed(index["name"], self.SHADOW_SUFFIX)
            await driver.execute(
                f"CREATE {parsed['unique'] or ''}INDEX IF NOT EXISTS {_quote(name)} "
                f"ON {_quote(shadow)} {parsed['rest']}"
            )
        # The indexed columns are the ones queries filter and sort on; the
        # JSON documents (inputs, result) cost most of a whole ANALYZE
        # (0.65 s against 0.15 s for 100,000 rows). A column list leaves
        # the table's count of changed rows as it is, so autovacuum soon
        # analyzes every column.
        columns = [row["name"] for row in await driver.fetch(INDEXED_COLUMNS_SQL, live)]
        listed = f" ({', '.join(map(_quote, columns))})" if columns else ""
        await driver.execute(f"ANALYZE {_quote(shadow)}{listed}")

    @staticmethod
    async def _add_foreign_keys(
        driver: asyncpg.Connection, live: str, shadow: str
    ) -> None:
        """Give the shadow the live table's foreign keys, checked in one pass each.

        After the bulk load: a key checked row by row cost the load more
        than its own write (1.7 s against 0.3 s for 100,000 rows), a key
        added NOT VALID and then validated checks them all at once without
        blocking writes to the tables it references.
        """
        present = {key["name"] for key in await driver.fetch(FOREIGN_KEYS_SQL, shadow)}
        for key in await driver.fetch(FOREIGN_KEYS_SQL, live):
            name = _quote(key["name"])
            if key["name"] in present:
                continue
            # A key the live table holds unvalidated still checks every row
            # written: the shadow's rows are all checked.
            definition = key["definition"].removesuffix(NOT_VALID)
            await driver.execute(
                f"ALTER TABLE {_quote(shadow)} ADD CONSTRAINT {name} "
                f"{definition}{NOT_VALID}"
            )
            await driver.execute(
                f"ALTER TABLE {_quote(shadow)} VALIDATE CONSTRAINT {name}"
            )

    @override
    async def swap(
        self,
        connection: AsyncConnection,
        live: str,
        *,
        lock_timeout: float,
        attempts: int,
    ) -> list[Reference]:
        driver = await driver_connection(connection)
        shadow, retired = self.shadow_name(live), self.retired_name(live)
        await self._check_same_shape(driver, live, shadow)
        indexes = [row["name"] for row in await driver.fetch(INDEXES_SQL, live)]
        carried: list[Reference] = []

        async def swap_once() -> None:
            carried.clear()
            await driver.execute(f"LOCK TABLE {_quote(live)} IN ACCESS EXCLUSIVE MODE")
            references = await driver.fetch(REFERENCING_KEYS_SQL, live)
            # Privileges and owner first: they name the shadow by its own name.
            for grant in await driver.fetch(GRANTS_SQL, live):
                await driver.execute(
                    f"GRANT {grant['privilege_type']} ON {_quote(shadow)} "
                    f"TO {grant['grantee']}"
                    + (" WITH GRANT OPTION" if grant["is_grantable"] else "")
                )
            owner = await driver.fetchval(OWNER_SQL, live)
            if owner != await driver.fetchval(OWNER_SQL, shadow):
                await driver.execute(f"ALTER TABLE {_quote(shadow)} OWNER TO {owner}")
            await driver.execute(
                f"ALTER TABLE {_quote(live)} RENAME TO {_quote(retired)}"
            )
            for name in indexes:
                await driver.execute(
                    f"ALTER INDEX {_quote(name)} RENAME TO "
                    f"{_quote(_suffixed(name, self.RETIRED_SUFFIX))}"
                )
            await driver.execute(
                f"ALTER TABLE {_quote(shadow)} RENAME TO {_quote(live)}"
            )
            for name in indexes:
                # Renaming an index renames the constraint it backs as well.
                await driver.execute(
                    f"ALTER INDEX {_quote(_suffixed(name, self.SHADOW_SUFFIX))} "
                    f"RENAME TO {_quote(name)}"
                )
            for key in references:
                # `referencing` is regclass text: quoted and qualified as needed.
                definition = key["definition"].removesuffix(NOT_VALID)
                await driver.execute(
                    f"ALTER TABLE {key['referencing']} "
                    f"DROP CONSTRAINT {_quote(key['name'])}, "
                    f"ADD CONSTRAINT {_quote(key['name'])} {definition}{NOT_VALID}"
                )
                if key["validated"]:
                    carried.append(Reference(key["referencing"], key["name"]))

        if not await with_lock_retries(driver, swap_once, lock_timeout, attempts):
            raise errors.DatabaseError(
                f"could not lock {live} for the swap within {attempts} tries of "
                f"{lock_timeout:g} s (a long transaction is using it); the shadow "
                "is kept: run the rebuild again to resume"
            )
        return carried

    @override
    async def validate(
        self, connection: AsyncConnection, references: list[Reference]
    ) -> None:
        driver = await driver_connection(connection)
        for reference in references:
            try:
                async with driver.transaction():
                    await driver.execute(
                        f"ALTER TABLE {reference.table} "
                        f"VALIDATE CONSTRAINT {_quote(reference.name)}"
                    )
            except asyncpg.ForeignKeyViolationError as exc:
                raise errors.DatabaseError(
                    f"after the rebuild, rows of {reference.table} reference "
                    f"rows the new table does not have; its foreign key "
                    f"{reference.name} is left NOT VALID ({exc.detail or exc})"
                ) from exc

    @override
    async def drop(
        self,
        connection: AsyncConnection,
        table: str,
        *,
        lock_timeout: float,
        attempts: int,
    ) -> bool:
        driver = await driver_connection(connection)

        async def drop_once() -> None:
            await driver.execute(f"DROP TABLE IF EXISTS {_quote(table)}")

        return await with_lock_retries(driver, drop_once, lock_timeout, attempts)

    async def _check_same_shape(
        self, driver: asyncpg.Connection, live: str, shadow: str
    ) -> None:
        """Refuse to swap in a shadow that no longer matches the live table.

        A migration run during the rebuild would otherwise be undone.
        """
        columns = [tuple(row) for row in await driver.fetch(COLUMNS_SQL, live)]
        shadow_columns = [tuple(row) for row in await driver.fetch(COLUMNS_SQL, shadow)]
        indexes = {
            _suffixed(row["name"], self.SHADOW_SUFFIX)
            for row in await driver.fetch(INDEXES_SQL, live)
        }
        shadow_indexes = {
            row["name"] for row in await driver.fetch(INDEXES_SQL, shadow)
        }
        if columns != shadow_columns or indexes != shadow_indexes:
            raise errors.DatabaseError(
                f"{live} changed during the rebuild (a migration?): its shadow "
                f"{shadow} no longer matches; run the rebuild again with --restart"
            )


async def with_lock_retries(
    driver: asyncpg.Connection,
    work: Callable[[], Awaitable[None]],
    lock_timeout: float,
    attempts: int,
) -> bool:
    """Run `work` in a savepoint with bounded lock waits; False if it never got its locks.

    A lock wait that times out (or a deadlock) rolls back to the savepoint
    only: the caller's transaction, and the locks it took before, stay.
    """
    for _ in range(attempts):
        try:
            async with driver.transaction():
                await driver.execute(
                    f"SET LOCAL lock_timeout = '{max(1, round(lock_timeout * 1000))}ms'"
                )
                await work()
                await driver.execute("SET LOCAL lock_timeout = DEFAULT")
        except TRANSIENT:
            # Give the readers that queued behind this try their turn.
            await asyncio.sleep(lock_timeout / 2)
            continue
        return True
    return False


async def _unlock_or_close(
    connection: PoolConnectionProxy[asyncpg.Record], name: str
) -> None:
    """Release the rebuild's session lock, or close the session that holds it.

    The pool does not reset sessions: a connection must never go back to
    it holding the lock (a failed or cancelled unlock closes it instead).
    """
    unlocked = False
    try:
        unlocked = bool(await connection.fetchval(UNLOCK_SQL, name))
    except (asyncpg.PostgresError, OSError):
        pass
    finally:
        if not unlocked:
            connection.terminate()
