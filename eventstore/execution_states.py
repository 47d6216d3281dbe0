"""Execution states: folded from their streams, remembered, and moved on by commands.

A command folds the execution's stream, checks the transition table, and
appends with `expected_version` set to the version it decided on. When a
concurrent command won the race, the loser folds the new head and decides
again (a bounded number of times), so it gets `InvalidTransition` when the
winner made its command impossible, or `ConcurrencyError` if it still cannot
win (ARCHITECTURE §3).

States of recently commanded executions are remembered (a bounded LRU), so a
worker that drives an execution through its lifecycle appends without
re-reading the stream first: the expected version still guards every
decision, and a stale memory only costs a re-read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from eventstore import errors
from eventstore.cache import BoundedCache
from eventstore.events.envelope import (
    EventMetadata,
    NewEvent,
    RecordedEvent,
    coerce_metadata,
)
from eventstore.fold import ExecutionState, fold_events
from eventstore.log import as_stream_id, just_recorded
from eventstore.status import is_allowed

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from eventstore.events import payloads
    from eventstore.log import EventLog

STATE_CACHE_SIZE: Final = 10_000
logger: Final = logging.getLogger(__name__)

MetadataArg = EventMetadata | Mapping[str, object] | None


class ExecutionStates:
    """Read, remember and command the states of executions over the log."""

    def __init__(self, log: EventLog, *, retries: int) -> None:
        self._log = log
        self._retries = retries
        # The last state each command produced (see the module docstring).
        self._states: BoundedCache[UUID, ExecutionState] = BoundedCache(
            STATE_CACHE_SIZE
        )

    async def get(self, execution_id: UUID | str) -> ExecutionState:
        """The execution's current state, folded from its stream now.

        Raises:
            ExecutionNotFound: no such execution.
            ValidationError: the id is not a UUID.
        """
        stream = as_stream_id(execution_id)
        known = self._states.get(stream)
        state: ExecutionState | None
        if known is None:
            events = await self._log.read_stream(stream)
            state = fold_events(events) if is_execution_stream(events) else None
        else:
            # Read from the remembered head on: that it is still there proves
            # no archive (in any process) removed the stream since.
            events = await self._log.read_stream(
                stream, after_version=known.version - 1
            )
            if events and events[0].version == known.version:
                state = fold_events(events[1:], known) if len(events) > 1 else known
            else:
                self._states.discard(stream)
                events = await self._log.read_stream(stream)
                state = fold_events(events) if is_execution_stream(events) else None
        if state is None:
            raise errors.ExecutionNotFound(execution_id=stream)
        self.remember(state)
        return state

    async def history(self, execution_id: UUID | str) -> list[RecordedEvent]:
        """Every event of the execution, in order.

        Raises:
            ExecutionNotFound: no such execution.
        """
        stream = as_stream_id(execution_id)
        events = await self._log.read_stream(stream)
        if not events:
            raise errors.ExecutionNotFound(execution_id=stream)
        return events

    def forget(self, execution_ids: Sequence[UUID]) -> None:
        """Drop remembered states of executions the archive removed."""
        for execution_id in execution_ids:
            self._states.discard(execution_id)

    def remember(self, state: ExecutionState) -> None:
        """Keep `state` as the execution's newest known state (never an older one)."""
        current = self._states.get(state.id)
        if current is None or current.version <= state.version:
            # Never replace a newer state that a concurrent command remembered.
            self._states.put(state.id, state)

    async def create(self, execution_id: UUID, created: NewEvent) -> None:
        """Start the execution's stream with its ExecutionCreated (idempotent)."""
        result = await self._log.append(execution_id, [created], expected_version=0)
        if not result.duplicate:
            self.remember(
                _applied(None, just_recorded(execution_id, [created], result))
            )

    async def command(
        self,
        execution_id: UUID | str,
        metadata: MetadataArg,
        decide: Callable[[ExecutionState], Sequence[payloads.EventPayload]],
    ) -> ExecutionState:
        """Append what `decide` chooses for the state, deciding again after a lost race.

        Raises:
            InvalidTransition: the newest state does not allow the events.
            ConcurrencyError: every try lost the race (more than `retries`).
            ExecutionNotFound: no such execution.
        """
        stream = as_stream_id(execution_id)
        meta = coerce_metadata(metadata)
        state = self._states.get(stream)
        fresh = state is None
        if state is None:
            state = await self.get(stream)
        lost = 0  # races lost on a freshly read head; a stale memory is not one
        expected = state.version
        while True:
            chosen = decide(state)
            refused = next(
                (p for p in chosen if not is_allowed(state.status, p.event_type)), None
            )
            if refused is not None:
                if not fresh:
                    # The remembered state may be stale; refuse only on a fresh one.
                    state, fresh = await self.get(stream), True
                    continue
                raise errors.InvalidTransition(
                    execution_id=stream,
                    status=state.status.value,
                    event_type=refused.event_type,
                )
            if lost > self._retries:
                # The command is still possible on the newest head, but every
                # try of it lost the race.
                raise errors.ConcurrencyError(
                    stream_id=stream, expected=expected, actual=state.version
                )
            events = [NewEvent.of(payload, metadata=meta) for payload in chosen]
            expected = state.version
            try:
                result = await self._log.append(
                    stream, events, expected_version=expected
                )
            except errors.ConcurrencyError:
                # Someone else moved the execution on: decide again on the new head.
                if fresh:
                    lost += 1
                state, fresh = await self.get(stream), True
                continue
            new_state = _applied(state, just_recorded(stream, events, result))
            self.remember(new_state)
            if logger.isEnabledFor(logging.DEBUG):  # the hot path pays one test
                logger.debug(
                    "execution %s: %s (version %d)",
                    stream,
                    ", ".join(event.type for event in events),
                    new_state.version,
                    extra={"execution_id": str(stream)},
                )
            return new_state


def _applied(
    state: ExecutionState | None, events: list[RecordedEvent]
) -> ExecutionState:
    folded = fold_events(events, state)
    assert folded is not None  # noqa: S101 - an append records at least one event
    return folded


def is_execution_stream(events: Sequence[RecordedEvent]) -> bool:
    """Whether the events are an execution's: a system stream has a timeline, no state."""
    return bool(events) and events[0].stream_type == "execution"
