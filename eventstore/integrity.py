"""Whole-log integrity: every stream's hash chain recomputed from the stored rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from eventstore import errors, hashing

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from eventstore.backends.base import Backend
    from eventstore.events.envelope import Checkpoint

BATCH: Final = 5000
MAX_PROBLEMS: Final = 100


@dataclass
class LogReport:
    """What `verify_log` read and found (at most the first problem of each stream)."""

    events: int = 0
    streams: int = 0
    problems: list[errors.IntegrityError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every chain verified."""
        return not self.problems


async def verify_log(
    backend: Backend, *, on_batch: Callable[[int], None] | None = None
) -> LogReport:
    """Recompute every stream's hash chain, reading the log once in global order.

    Global order keeps each stream's versions in order (an append only sees
    committed heads), so one pass with a head per stream is enough.

    Returns:
        The counts and the first break of each broken stream (at most 100).
    """
    await backend.ensure_schema()
    report = LogReport()
    heads: dict[UUID, tuple[int, bytes]] = {}
    broken: set[UUID] = set()
    after: Checkpoint | None = None
    while True:
        events = await backend.read_all(after, limit=BATCH)
        if not events:
            break
        for event in events:
            report.events += 1
            if event.stream_id in broken:
                continue
            version, previous = heads.get(event.stream_id, (0, hashing.GENESIS_HASH))
            problem = None
            if event.version != version + 1:
                problem = f"version {event.version} where {version + 1} was expected"
            elif hashing.event_hash(previous, event) != event.hash:
                problem = (
                    f"the hash of version {event.version} does not match its content"
                )
            if problem is None:
                heads[event.stream_id] = (event.version, event.hash)
                continue
            broken.add(event.stream_id)
            if len(report.problems) < MAX_PROBLEMS:
                report.problems.append(
                    errors.IntegrityError(
                        stream_id=event.stream_id,
                        position=event.position,
                        reason=problem,
                    )
                )
        after = events[-1].checkpoint
        if on_batch is not None:
            on_batch(report.events)
    report.streams = len(heads) + len(broken - heads.keys())
    return report
