"""Wake-ups: tell this process's live readers that the log may have grown.

One source per store. Appends through the store wake its readers at once
(`notify`); on PostgreSQL a LISTEN on its own connection wakes them when
any other store process commits an append (each sends a coalesced NOTIFY). A
wake-up is only a hint: readers always wait with a timeout and read again,
so a lost notification, a listener reconnecting after a server restart, or a
PgBouncer in transaction mode (which does not pass LISTEN) costs latency,
never an event (ARCHITECTURE §4).

The listener starts lazily, with the first wait: a store that only appends
holds no extra connection.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Final, TypeVar

import tenacity

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventstore.backends.base import Backend
    from eventstore.backends.listening import Listener


T = TypeVar("T")
POLL_MAX: Final = 0.25
POLL_FIRST: Final = 0.01


class Wakeups:
    """A generation counter that moves on every known append, and waits on it.

    Readers take `generation` before they read, then `wait(seen, delay)`: it
    returns at once if anything happened since, so no wake-up falls between
    the read and the wait.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._event = asyncio.Event()
        self._listener: Listener | None = None
        self._started = False
        self._closed = False
        self.generation = 0

    @property
    def closed(self) -> bool:
        """Whether `aclose` was called (no listener starts any more)."""
        return self._closed

    @property
    def listening(self) -> bool:
        """Whether other processes' appends wake this one now (not only the poll)."""
        return self._listener is not None and self._listener.connected

    def notify(self) -> None:
        """Wake every waiter: an append committed (here, or announced by the database)."""
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def start(self) -> None:
        """Start listening for other processes' appends, once; later calls return at once.

        Never fails for an unreachable database: the listener retries in the
        background, and readers poll meanwhile.
        """
        if self._started or self._closed:
            return
        self._started = True
        listener = await self._backend.listen(self.notify)
        if self.closed and listener is not None:
            await listener.aclose()  # the store closed while we were starting
            return
        self._listener = listener

    async def wait(
        self, seen: int, delay: float, *, stop: asyncio.Event | None = None
    ) -> bool:
        """Wait for an append newer than generation `seen`, at most `delay` seconds.

        Args:
            seen: `generation` as it was before the caller's last read.
            delay: the poll interval: the longest a missed wake-up may cost.
            stop: also return when this event is set.

        Returns:
            True if woken by an append (also one that came before the call),
            False after `delay` or on `stop`.
        """
        await self.start()
        if self.generation != seen:
            return True
        if stop is None:
            try:
                await asyncio.wait_for(self._event.wait(), delay)
            except TimeoutError:
                return False
            return True
        if stop.is_set():
            return False
        waiters = {
            asyncio.ensure_future(self._event.wait()),
            asyncio.ensure_future(stop.wait()),
        }
        try:
            await asyncio.wait(
                waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self.generation != seen

    async def poll(
        self,
        read: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        *,
        within: float | None,
        poll_interval: float,
    ) -> T:
        """Read until `done` says so, or until `within` seconds ran out (None: never).

        Appends through this store wake the poll at once, and on PostgreSQL
        so do other processes' (LISTEN/NOTIFY). Between reads it backs off
        to POLL_MAX, or to `poll_interval` while the listener is up and a
        read only covers a missed notification.

        Returns:
            The last value read: done, or the one read when time ran out.
        """
        deadline = (
            math.inf
            if within is None or math.isinf(within)
            else time.monotonic() + within
        )
        # Doubling from 10 ms (or the poll interval, if shorter), each wait
        # longer by up to as much again at random, so that many readers
        # polling one database spread out.
        first = min(poll_interval, POLL_FIRST)
        growing = tenacity.wait_exponential(multiplier=first) + tenacity.wait_random(
            0, first
        )
        seen = self.generation

        async def read_once() -> T:
            nonlocal seen
            seen = self.generation  # before the read: no wake-up falls between
            return await read()

        def next_delay(state: tenacity.RetryCallState) -> float:
            longest = max(POLL_MAX, poll_interval) if self.listening else POLL_MAX
            # The last wait ends at the deadline, for one more read.
            left = max(0.0, deadline - time.monotonic())
            delay: float = growing(state)
            return min(delay, longest, left)

        async def woken_or_timed_out(delay: float) -> None:
            await self.wait(seen, delay)

        def last_value(state: tenacity.RetryCallState) -> T:
            assert state.outcome is not None  # noqa: S101 - called after an attempt
            value: T = state.outcome.result()
            return value

        polling: tenacity.AsyncRetrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_result(lambda value: not done(value)),
            wait=next_delay,
            stop=lambda _: time.monotonic() >= deadline,
            sleep=woken_or_timed_out,
            retry_error_callback=last_value,
        )
        return await polling(read_once)

    async def aclose(self) -> None:
        """Stop listening (the store is closing)."""
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.aclose()
