"""The wake-up source's contract, without a database."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from typing_extensions import override

from eventstore.backends.listening import Listener
from eventstore.wakeups import Wakeups

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventstore.backends.base import Backend


class RecordingListener(Listener):
    def __init__(self) -> None:
        self.closed = False

    @override
    @property
    def connected(self) -> bool:
        return not self.closed

    @override
    async def aclose(self) -> None:
        self.closed = True


class ListeningBackend:
    """Only what Wakeups uses of a Backend: `listen`."""

    def __init__(self) -> None:
        self.listeners: list[RecordingListener] = []
        self.on_notify: Callable[[], None] | None = None

    async def listen(self, on_notify: Callable[[], None]) -> Listener | None:
        await asyncio.sleep(0)  # a real backend may await before returning
        self.on_notify = on_notify
        listener = RecordingListener()
        self.listeners.append(listener)
        return listener


def wakeups_on(backend: ListeningBackend) -> Wakeups:
    return Wakeups(cast("Backend", backend))


def listening(wakeups: Wakeups) -> bool:
    """Read afresh (mypy would keep an asserted property narrowed)."""
    return wakeups.listening


async def test_a_wake_up_before_the_wait_is_not_lost() -> None:
    wakeups = wakeups_on(ListeningBackend())
    seen = wakeups.generation
    wakeups.notify()
    async with asyncio.timeout(1):
        assert await wakeups.wait(seen, 60) is True


async def test_wait_returns_false_after_the_delay() -> None:
    wakeups = wakeups_on(ListeningBackend())
    assert await wakeups.wait(wakeups.generation, 0.01) is False


async def test_a_notification_wakes_every_waiter() -> None:
    backend = ListeningBackend()
    wakeups = wakeups_on(backend)
    seen = wakeups.generation
    waiters = [asyncio.create_task(wakeups.wait(seen, 60)) for _ in range(3)]
    await asyncio.sleep(0)
    async with asyncio.timeout(1):
        while True:
            if backend.on_notify is not None:
                break
            await asyncio.sleep(0)
        backend.on_notify()  # as the database's listener would
        assert await asyncio.gather(*waiters) == [True, True, True]


async def test_stop_ends_the_wait() -> None:
    wakeups = wakeups_on(ListeningBackend())
    stop = asyncio.Event()
    waiting = asyncio.create_task(wakeups.wait(wakeups.generation, 60, stop=stop))
    await asyncio.sleep(0)
    stop.set()
    async with asyncio.timeout(1):
        assert await waiting is False
    assert await wakeups.wait(wakeups.generation, 60, stop=stop) is False


async def test_one_listener_started_by_the_first_wait_and_closed_once() -> None:
    backend = ListeningBackend()
    wakeups = wakeups_on(backend)
    assert backend.listeners == []  # nothing listens before someone waits
    assert listening(wakeups) is False
    await asyncio.gather(*(wakeups.wait(wakeups.generation, 0.01) for _ in range(3)))
    assert len(backend.listeners) == 1
    assert listening(wakeups) is True
    await wakeups.aclose()
    assert backend.listeners[0].closed
    assert listening(wakeups) is False
    await wakeups.wait(wakeups.generation, 0.01)
    assert len(backend.listeners) == 1  # a closed source starts no listener


async def test_closing_while_the_listener_starts_closes_it() -> None:
    backend = ListeningBackend()
    wakeups = wakeups_on(backend)
    starting = asyncio.create_task(wakeups.start())
    await asyncio.sleep(0)  # inside listen()
    await wakeups.aclose()
    await starting
    [listener] = backend.listeners
    assert listener.closed
