"""Upcasters: old payload shapes are turned into the current one on read (ARCHITECTURE §8).

The log is immutable, so an event keeps the shape it was written with; every
reader (fold, audit, projection, archive replay) sees the current shape
because reads pass through `upcast`. An upcaster is registered per
``(event type, from_version)`` and returns the data of ``from_version + 1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventstore import errors
from eventstore.events import payloads

if TYPE_CHECKING:
    from collections.abc import Callable


_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_upcaster(
    event_type: str, from_version: int
) -> Callable[
    [Callable[[dict[str, Any]], dict[str, Any]]],
    Callable[[dict[str, Any]], dict[str, Any]],
]:
    """Register a function that lifts `event_type` data from `from_version` by one.

    Raises:
        ValidationError: an upcaster is already registered for that pair.
    """

    def decorate(
        function: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        key = (event_type, from_version)
        if key in _UPCASTERS:
            raise errors.ValidationError(
                f"an upcaster for {event_type} v{from_version} is already registered"
            )
        _UPCASTERS[key] = function
        return function

    return decorate


def upcast(
    event_type: str, schema_version: int, data: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Lift stored data to the current schema version of its type.

    Unregistered types and current versions pass through untouched. The
    upcasters are pure, so `data` itself is never changed.

    Raises:
        ValidationError: an intermediate version has no upcaster, or an
            upcaster cannot lift the data (names the type and version).
    """
    model = payloads.PAYLOAD_TYPES.get(event_type)
    if model is None or schema_version >= model.schema_version:
        return schema_version, data
    while schema_version < model.schema_version:
        step = _UPCASTERS.get((event_type, schema_version))
        if step is None:
            raise errors.ValidationError(
                f"no upcaster registered for {event_type} v{schema_version}"
            )
        try:
            lifted = step(data)
        except errors.ValidationError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A careless upcaster (data["key"] on a payload without it) still
            # gives the store's error, naming what could not be lifted.
            raise errors.ValidationError(
                f"cannot upcast {event_type} v{schema_version} data: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(lifted, dict):
            raise errors.ValidationError(
                f"the upcaster of {event_type} v{schema_version} returned "
                f"{type(lifted).__name__}, not a dict"
            )
        data = lifted
        schema_version += 1
    return schema_version, data
