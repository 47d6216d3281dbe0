"""Catch-up then live: a subscription reads the log from a checkpoint, then follows it.

When caught up it waits on the store's wake-ups (appends through the same
store, and on PostgreSQL every other process's appends by LISTEN/NOTIFY),
and reads again at least every `poll_interval`, so a missed notification
costs latency only. Reads are the log's gap-safe batches, so a subscriber
never skips an event committed out of position order.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Final, Self

from eventstore import errors
from eventstore.arguments import BATCH_MAX, checked_int

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from types import TracebackType
    from uuid import UUID

    from eventstore.events.checkpoint import Checkpoint
    from eventstore.events.envelope import RecordedEvent
    from eventstore.log import EventLog
    from eventstore.wakeups import Wakeups

RECHECK_MIN: Final = 0.05
"""Seconds before the first re-read when a wake-up's read found nothing new."""


class Subscription:
    """An async iterator of RecordedEvent, live until closed.

    Use ``async with store.subscribe(...) as events: async for event in events``,
    or iterate it and call ``aclose()``.
    """

    def __init__(
        self,
        *,
        log: EventLog,
        wakeups: Wakeups,
        after: Checkpoint | tuple[int, int] | int | None,
        stream_id: UUID | None,
        types: Collection[str] | None,
        poll_interval: float,
        batch_size: int,
    ) -> None:
        self._log = log
        self._wakeups = wakeups
        self._requested_after = after
        self._after: Checkpoint | None = None
        self._stream_id = stream_id
        self._types = _checked_types(types)
        self._poll_interval = poll_interval
        self._batch_size = checked_int("batch_size", batch_size, low=1, high=BATCH_MAX)
        self._events = self._run()

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The checkpoint of the last event read (yielded or filtered out)."""
        return self._after

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RecordedEvent:
        return await self._events.__anext__()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the subscription."""
        await self._events.aclose()

    def _wanted(self, event: RecordedEvent) -> bool:
        if self._stream_id is not None and event.stream_id != self._stream_id:
            return False
        return self._types is None or event.type in self._types

    async def _run(self) -> AsyncGenerator[RecordedEvent, None]:
        self._after = await self._log.resolve_after(self._requested_after)
        recheck: float | None = None
        while True:
            seen = self._wakeups.generation
            batch = await self._log.read_batch(self._after, limit=self._batch_size)
            for event in batch:
                self._after = event.checkpoint
                if self._wanted(event):
                    yield event
            if len(batch) == self._batch_size:
                continue
            if batch:
                recheck = None
            delay = self._poll_interval if recheck is None else recheck
            if await self._wakeups.wait(seen, delay):
                # Something committed. If the next read shows nothing, an
                # older transaction still holds the gap-safe horizon back:
                # look again soon rather than a whole poll interval later.
                recheck = RECHECK_MIN
            elif recheck is not None:
                recheck = recheck * 2 if recheck * 2 < self._poll_interval else None


def _checked_types(types: Collection[str] | None) -> frozenset[str] | None:
    # A bare string is a collection of its letters: refused, not read as one type.
    if types is None:
        return None
    if isinstance(types, str | bytes) or not isinstance(types, Collection):
        raise errors.ValidationError(
            f"invalid types: a collection of event type names is required, not {types!r}"
        )
    if not all(isinstance(name, str) for name in types):
        raise errors.ValidationError("invalid types: every event type name is a string")
    return frozenset(types)
