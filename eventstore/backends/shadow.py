"""The interface of the shadow tables a zero-downtime rebuild builds and swaps in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import contextlib

    from sqlalchemy.ext.asyncio import AsyncConnection


class Reference(NamedTuple):
    """Another table's foreign key to a swapped table, to validate after the swap."""

    table: str
    name: str


class ShadowTables(ABC):
    """The DDL of a zero-downtime rebuild (ARCHITECTURE §5): build beside, then swap in.

    The shadow of table ``t`` is ``t_rebuild``, its indexes and constraints
    are named after ``t``'s with the same suffix; the swap gives the
    canonical names back and leaves the old table as ``t_retired`` (its
    indexes suffixed alike) until it is dropped.
    """

    SHADOW_SUFFIX = "_rebuild"
    RETIRED_SUFFIX = "_retired"

    def shadow_name(self, live: str) -> str:
        """The name of `live`'s shadow table."""
        return live + self.SHADOW_SUFFIX

    def retired_name(self, live: str) -> str:
        """The name the swap gives the table it replaces."""
        return live + self.RETIRED_SUFFIX

    @abstractmethod
    def lock(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold the lock that lets one rebuild of `name` run at a time.

        Yields whether it was taken (False: another rebuild holds it). The
        database frees it if this process dies.
        """

    @abstractmethod
    async def exists(self, connection: AsyncConnection, table: str) -> bool:
        """Whether the table exists."""

    @abstractmethod
    async def create(self, connection: AsyncConnection, live: str) -> None:
        """Create `live`'s shadow, empty: its columns and keys.

        Plain indexes and foreign keys are left for `finish`, after the
        bulk load.
        """

    @abstractmethod
    async def finish(self, connection: AsyncConnection, live: str) -> None:
        """Give the shadow `live`'s other indexes, its foreign keys (checked) and fresh planner statistics."""

    @abstractmethod
    async def swap(
        self,
        connection: AsyncConnection,
        live: str,
        *,
        lock_timeout: float,
        attempts: int,
    ) -> list[Reference]:
        """In the caller's transaction: put the shadow in `live`'s place.

        Renames the live table (and its indexes) to the retired names and
        the shadow (and its indexes) to the canonical ones; privileges and
        owner are carried over, and so are other tables' foreign keys to
        `live`, unchecked: returns those to `validate` once committed. Lock
        waits give up after `lock_timeout` seconds and are tried `attempts`
        times.

        Raises:
            DatabaseError: the locks were not had, or the shadow no longer
                has the live table's columns and indexes.
        """

    @abstractmethod
    async def validate(
        self, connection: AsyncConnection, references: list[Reference]
    ) -> None:
        """Check the existing rows against the foreign keys `swap` carried over.

        Raises:
            DatabaseError: a row references a row the new table lacks (the
                key stays NOT VALID, still enforced for new rows).
        """

    @abstractmethod
    async def drop(
        self,
        connection: AsyncConnection,
        table: str,
        *,
        lock_timeout: float,
        attempts: int,
    ) -> bool:
        """Drop a table if it exists; False if its locks were not had in time."""
