"""Catch-up then live: a subscription reads the log from a checkpoint, then polls.

It is woken early by appends made through the same store; otherwise it polls
every `poll_interval` (appends from other processes, a later issue's
LISTEN/NOTIFY). Reads are the log's gap-safe batches, so a subscriber never
skips an event committed out of position order.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Collection
    from types import TracebackType
    from uuid import UUID

    from eventstore.events.envelope import Checkpoint, RecordedEvent
    from eventstore.log import EventLog


class AppendSignal:
    """Wakes the subscriptions of this process when the store appended."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.generation = 0

    def notify(self) -> None:
        """Called after every successful append."""
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int, delay: float) -> None:
        """Return after an append newer than generation `seen`, or `delay` seconds.

        Returns at once if one already happened, so no wake-up is lost.
        """
        if self.generation != seen:
            return
        try:
            await asyncio.wait_for(self._event.wait(), delay)
        except TimeoutError:
            return


class Subscription:
    """An async iterator of RecordedEvent, live until closed.

    Use ``async with store.subscribe(...) as events: async for event in events``,
    or iterate it and call ``aclose()``.
    """

    def __init__(
        self,
        *,
        log: EventLog,
        signal: AppendSignal,
        after: Checkpoint | tuple[int, int] | int | None,
        stream_id: UUID | None,
        types: Collection[str] | None,
        poll_interval: float,
        batch_size: int,
    ) -> None:
        self._log = log
        self._signal = signal
        self._requested_after = after
        self._after: Checkpoint | None = None
        self._stream_id = stream_id
        self._types = frozenset(types) if types is not None else None
        self._poll_interval = poll_interval
        self._batch_size = batch_size
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
        while True:
            seen = self._signal.generation
            batch = await self._log.read_batch(self._after, limit=self._batch_size)
            for event in batch:
                self._after = event.checkpoint
                if self._wanted(event):
                    yield event
            if len(batch) < self._batch_size:
                await self._signal.wait(seen, self._poll_interval)
