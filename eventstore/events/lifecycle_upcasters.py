"""The store's own upcasters: stored old payload shapes lifted one version (ARCHITECTURE §8).

Imported by `eventstore.events`, so they are registered whenever the store
is. Each upcaster is pure: it validates the stored shape of its version
against a frozen snapshot of that version (never against the current model,
which moves on), builds the next version's data as a new dict and leaves its
input untouched. A stored payload that does not fit the old shape is refused
with a `ValidationError` naming the event type and version. How to add one:
docs/UPCASTING.md.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Final

import pydantic
from pydantic import BaseModel, ConfigDict, Field, Strict

from eventstore import errors
from eventstore.events.payloads import USAGE_METRICS, ExecutionProgressed, JSONData
from eventstore.events.upcasting import register_upcaster

_TokenCount = Annotated[int, Strict(), Field(ge=0)]
_Cost = (
    Annotated[int, Strict(), Field(ge=0)]
    | Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
)


class ExecutionProgressedV1(BaseModel):
    """ExecutionProgressed as version 1 stored it: usage flat, beside the step.

    ``{"step": "retrieve", "detail": {"docs": 4}, "prompt_tokens": 120,
    "completion_tokens": 30, "cost_usd": 0.0021}``; each usage key is
    optional (absent when not reported), no other metrics existed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str | int
    detail: JSONData = None
    prompt_tokens: _TokenCount = 0
    completion_tokens: _TokenCount = 0
    cost_usd: _Cost = 0


PROGRESSED_V1: Final = f"{ExecutionProgressed.event_type} v1"


@register_upcaster(ExecutionProgressed.event_type, 1)
def execution_progressed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Nest v1's flat usage under ``metrics`` (v2), keeping only the keys reported.

    Raises:
        ValidationError: the data is not a v1 ExecutionProgressed payload.
    """
    try:
        old = ExecutionProgressedV1.model_validate(data)
    except pydantic.ValidationError as exc:
        raise errors.ValidationError.from_pydantic(
            exc, f"{PROGRESSED_V1} data (cannot upcast it to v2)"
        ) from exc
    # Only the keys v1 recorded, so the lifted data equals what a v2 writer
    # records for the same report (absent, not zero, when nothing was used).
    metrics: dict[str, int | float] = {
        name: getattr(old, name)
        for name in USAGE_METRICS
        if name in old.model_fields_set
    }
    # detail is copied so that no caller can reach the stored data through it.
    return {"step": old.step, "detail": copy.deepcopy(old.detail), "metrics": metrics}
