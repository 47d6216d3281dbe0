"""What the audit needs of a store: a protocol, so the audit never imports the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from eventstore.backends.base import Backend
    from eventstore.executions import ExecutionService
    from eventstore.log import EventLog
    from eventstore.settings import StoreSettings


class AuditedStore(Protocol):
    """The parts of an `EventStore` the audit works with."""

    @property
    def backend(self) -> Backend:
        """The database."""
        ...

    @property
    def settings(self) -> StoreSettings:
        """How the store connects (verify's other processes connect alike)."""
        ...

    @property
    def log(self) -> EventLog:
        """Appends and upcast reads."""
        ...

    @property
    def executions(self) -> ExecutionService:
        """The lifecycle service (histories)."""
        ...

    def forget_streams(self, stream_ids: Sequence[UUID]) -> None:
        """Drop what the process remembers of streams the archive removed."""
        ...
