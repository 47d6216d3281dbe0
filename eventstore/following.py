"""Watching one execution: wait for its end, or follow its events as they are appended.

Both read only that execution's stream. Appends through this store wake
them at once, and on PostgreSQL so do other processes' (LISTEN/NOTIFY,
`eventstore.wakeups`); a poll covers a missed notification.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from eventstore import arguments, errors
from eventstore.arguments import INT32_MAX
from eventstore.fold import TERMINAL_EVENT_TYPES
from eventstore.log import as_stream_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    from eventstore.events import RecordedEvent
    from eventstore.execution_states import ExecutionStates
    from eventstore.fold import ExecutionState
    from eventstore.log import EventLog
    from eventstore.wakeups import Wakeups


class Watcher:
    """`ExecutionService.wait` and `ExecutionService.follow`."""

    def __init__(
        self,
        *,
        log: EventLog,
        states: ExecutionStates,
        wakeups: Wakeups,
        poll_interval: float,
    ) -> None:
        self._log = log
        self._states = states
        self._wakeups = wakeups
        self._poll_interval = poll_interval

    async def wait(
        self,
        execution_id: UUID | str,
        *,
        timeout: float | None,  # noqa: ASYNC109 - the API's own deadline argument
    ) -> ExecutionState:
        """The terminal state (see `ExecutionService.wait`)."""
        timeout = arguments.checked_timeout(timeout)
        state = await self._wakeups.poll(
            lambda: self._states.get(execution_id),
            lambda state: state.is_terminal,
            within=timeout,
            poll_interval=self._poll_interval,
        )
        if not state.is_terminal:
            raise errors.WaitTimeout(
                execution_id=state.id, timeout=timeout or 0.0, status=state.status.value
            )
        return state

    async def follow(
        self, execution_id: UUID | str, *, after_version: int
    ) -> AsyncIterator[RecordedEvent]:
        """The events after `after_version`, as appended, up to the terminal one."""
        stream = as_stream_id(execution_id)
        arguments.checked_int("after_version", after_version, low=0, high=INT32_MAX)
        # The state first: a run that is over needs no waiting (labels may
        # still follow its end, but no new status).
        state = await self._states.get(stream)
        events = await self._log.read_stream(stream, after_version=after_version)
        if state.is_terminal:
            for event in events:
                yield event
            return
        while True:
            if not events:
                events = await self._wakeups.poll(
                    functools.partial(
                        self._log.read_stream, stream, after_version=after_version
                    ),
                    bool,
                    within=None,
                    poll_interval=self._poll_interval,
                )
            for event in events:
                yield event
                after_version = event.version
                if event.type in TERMINAL_EVENT_TYPES:
                    return
            events = []
