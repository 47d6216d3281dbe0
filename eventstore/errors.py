"""The one exception tree of the store: everything it raises derives from EventStoreError.

Every class keeps the facts of the failure as keyword-only attributes and builds
a one-line, user-facing message from them, so programs branch on attributes and
humans read ``str(exc)``. Driver errors are translated into this tree in one
place per backend (``eventstore.backends``); none crosses the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventstore.redaction import redact_url, scrub

if TYPE_CHECKING:
    from uuid import UUID

    from pydantic import ValidationError as PydanticValidationError


class EventStoreError(Exception):
    """Root of every error the store raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as made, not re-made from `args`: most errors take keyword
        # arguments only. They cross processes (verify's workers).
        return (_unpickled, (type(self), self.args, self.__dict__))


def _unpickled(
    kind: type[EventStoreError], args: tuple[object, ...], state: dict[str, Any]
) -> EventStoreError:
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigurationError(EventStoreError, ValueError):
    """A setting is wrong: an unsupported or malformed database URL, a bad option."""


class DatabaseError(EventStoreError):
    """The database (or its driver, or the operating system under it) failed.

    `transient` says whether trying again may succeed: True for a lost or
    refused connection, a serialization failure, a deadlock, a busy
    database; False for what another try repeats (a constraint violation,
    a value out of range, a missing privilege). Only driver and operating
    system errors become database errors; a bug is never one.
    """

    transient: bool = False

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        # A driver's text may quote the URL's secrets (options=, password=).
        super().__init__(scrub(message))
        if transient is not None:
            self.transient = transient


class DatabaseConflict(DatabaseError):
    """Concurrent work made the database refuse an operation that may succeed if retried.

    A serialization failure, a deadlock, a lock not had in time, a busy or
    locked SQLite file. Always transient.
    """

    transient = True


class DatabaseUnavailable(DatabaseError, ConnectionError):
    """The database cannot be reached (refused, unknown host, lost connection).

    Transient, except where the server answered that this login or database
    is wrong (failed authentication, no such database): `transient` False.
    """

    transient = True

    def __init__(self, *, url: str, reason: str, transient: bool = True) -> None:
        self.url = url = redact_url(url)
        self.reason = reason = scrub(reason)
        super().__init__(
            f"cannot reach the database at {url}: {reason}", transient=transient
        )


class SchemaNotMigrated(DatabaseError):
    """The database has no schema, or an older one: run `eventstore migrate`."""

    def __init__(self, *, url: str, current: str | None, head: str) -> None:
        self.url = url = redact_url(url)
        self.current = current
        self.head = head
        found = f"revision {current}" if current else "no schema"
        super().__init__(
            f"the database at {url} is not migrated ({found}, expected {head}): "
            "run `eventstore migrate`"
        )


class ConcurrencyError(EventStoreError):
    """The stream's version is not the one the writer expected."""

    def __init__(self, *, stream_id: UUID, expected: int | None, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id} is at version {actual}, expected {expected}"
        )


class InvalidTransition(EventStoreError):
    """A lifecycle command is not allowed in the execution's current status."""

    def __init__(
        self, *, execution_id: UUID, status: str, event_type: str, reason: str = ""
    ) -> None:
        self.execution_id = execution_id
        self.status = status
        self.event_type = event_type
        self.reason = reason
        super().__init__(
            f"execution {execution_id} is {status}: {event_type} is not allowed"
            + (f" ({reason})" if reason else "")
        )


class ExecutionNotFound(EventStoreError, LookupError):
    """No execution has this id."""

    def __init__(self, *, execution_id: UUID) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id} not found")


class ReferenceNotFound(EventStoreError, LookupError):
    """A referenced thread, message or graph does not exist."""

    def __init__(self, *, entity: str, entity_id: UUID) -> None:
        self.entity = entity
        self.entity_id = entity_id
        super().__init__(f"{entity} {entity_id} not found")


class ReferenceConflict(EventStoreError):
    """A thread, message or graph is already recorded with other content.

    `messages.create(id=...)` retried with another text, or
    `graphs.get_or_create` for a name and version defined otherwise.
    """

    def __init__(self, *, entity: str, entity_id: UUID, reason: str) -> None:
        self.entity = entity
        self.entity_id = entity_id
        super().__init__(f"{entity} {entity_id} is already recorded {reason}")


class ValidationError(EventStoreError, ValueError):
    """An input is malformed: a payload, metadata, an id, a time, an argument."""

    @classmethod
    def from_pydantic(cls, exc: PydanticValidationError, what: str) -> ValidationError:
        """One line naming every problem pydantic found in `what`."""
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or what}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        return cls(f"invalid {what}: {problems}")


class EventNotApplicable(EventStoreError):
    """A stored event the execution fold cannot apply (wrong type, order or data).

    A problem found in what is stored (the projector calls it a poison
    event), not in what a caller passed: hence not a ValidationError.
    """

    def __init__(
        self,
        *,
        stream_id: UUID,
        version: int,
        position: int,
        event_id: UUID,
        reason: str,
    ) -> None:
        self.stream_id = stream_id
        self.version = version
        self.position = position
        self.event_id = event_id
        self.reason = reason
        super().__init__(reason)


class IdempotencyConflict(EventStoreError):
    """An event id (or idempotency key) was reused for different content.

    The request conflicts with what is recorded; it is not malformed.
    """

    def __init__(self, *, event_id: UUID, stream_id: UUID, reason: str) -> None:
        self.event_id = event_id
        self.stream_id = stream_id
        super().__init__(
            f"event {event_id} is already recorded in stream {stream_id} "
            f"with other content: {reason}"
        )


class IntegrityError(EventStoreError):
    """The record's integrity is at stake: one of the two subclasses below.

    `RecordAltered`: a check found the record altered (a hash chain, an
    anchor, a receipt, an archive file). `AppendOnlyViolation`: the database
    refused to change or remove recorded events.
    """

    def __init__(
        self, *, stream_id: UUID | None, position: int | None, reason: str
    ) -> None:
        self.stream_id = stream_id
        self.position = position
        self.reason = reason
        where = ""
        if stream_id is not None:
            where += f" in stream {stream_id}"
        if position is not None:
            where += f" at position {position}"
        super().__init__(f"integrity violation{where}: {reason}")


class RecordAltered(IntegrityError):
    """A check found the record altered: a chain, anchor, receipt or archive mismatch.

    Also stored text that is not what the store writes (not JSON, not an object).
    """


class AppendOnlyViolation(IntegrityError):
    """The database refused to change or remove recorded events (the log is append-only)."""


class WaitTimeout(EventStoreError, TimeoutError):
    """An execution did not reach a terminal status within the timeout."""

    def __init__(self, *, execution_id: UUID, timeout: float, status: str) -> None:
        self.execution_id = execution_id
        self.timeout = timeout
        self.status = status
        super().__init__(f"execution {execution_id} still {status} after {timeout:g} s")


class ProjectionError(EventStoreError):
    """A projection could not apply an event (a poison event)."""

    def __init__(
        self, *, projection: str, position: int, event_id: UUID, reason: str
    ) -> None:
        self.projection = projection
        self.position = position
        self.event_id = event_id
        self.reason = reason
        super().__init__(
            f"projection {projection} stopped at position {position} "
            f"(event {event_id}): {reason}"
        )


class CheckpointConflict(EventStoreError):
    """Another projector moved a projection's checkpoint first; this batch is void."""

    def __init__(self, *, projection: str, partition: int) -> None:
        self.projection = projection
        self.partition = partition
        super().__init__(
            f"the checkpoint of projection {projection} (partition {partition}) "
            "was moved by another projector"
        )


class RebuildInProgress(EventStoreError):
    """A rebuild holds the projection (its swap, or an in-place replay): nothing was done.

    A projector's slot waits and tries again; `eventstore project --status`
    shows it waiting.
    """

    def __init__(self, *, projection: str) -> None:
        self.projection = projection
        super().__init__(f"a rebuild holds projection {projection}: its slots wait")


class ArchiveError(EventStoreError):
    """An archive was refused or failed: nothing was removed from the log."""


class StreamArchived(EventStoreError):
    """The stream was archived: its id cannot start a stream again.

    The archive keeps a tombstone of every stream it removed, so an
    idempotency key or a retry cannot bring an archived execution back as a
    new one while the archive says how it ended.
    """

    def __init__(self, *, stream_id: UUID) -> None:
        self.stream_id = stream_id
        super().__init__(
            f"stream {stream_id} was archived: its id cannot be used again"
        )
