"""The payloads of the execution lifecycle (ARCHITECTURE §3) and the registry by type name."""

from __future__ import annotations

import math
import traceback as traceback_module
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final, TypeVar
from uuid import UUID

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    model_serializer,
    model_validator,
)

from eventstore import errors, hashing
from eventstore.arguments import INT32_MAX
from eventstore.labels import LABELS_MAX, LabelKey, Labels

USAGE_METRICS: Final = ("prompt_tokens", "completion_tokens", "cost_usd")


METRIC_MAX: Final = 2**992
"""The largest magnitude of one metric delta. A stream holds at most 2**31
versions (its version column), and 2**31 deltas so bounded still sum to a
finite float (below 2**1024), so the fold can always add them up, whatever
mix of integers and floats it meets; integers stay exact (JSON keeps them)."""


def _check_metrics(metrics: dict[str, int | float]) -> dict[str, int | float]:
    for name, value in metrics.items():
        # Compared before any float conversion: 2**2000 overflows one.
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metric {name!r} must be a finite number")
        if abs(value) > METRIC_MAX:
            raise ValueError(
                f"metric {name!r} is beyond ±2**992 (sums of such deltas would "
                "leave the range of a float)"
            )
        if name in USAGE_METRICS and value < 0:
            raise ValueError(f"metric {name!r} is a usage delta and cannot be negative")
        if name in ("prompt_tokens", "completion_tokens") and not isinstance(
            value, int
        ):
            raise ValueError(f"metric {name!r} counts tokens: an integer is required")
    return metrics


Number = Annotated[int, Strict()] | Annotated[float, Strict()]
Metrics = Annotated[dict[str, Number], AfterValidator(_check_metrics)]
"""Usage deltas: names to numbers (bools and strings are refused)."""


WORKER_ID_MAX: Final = 200  # the projection's and the lease's worker_id column


class EventPayload(BaseModel):
    """Base of every registered payload: frozen, strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


PAYLOAD_TYPES: dict[str, type[EventPayload]] = {}
_M = TypeVar("_M", bound=EventPayload)
_P = TypeVar("_P", bound=type[EventPayload])


def register_payload(model: _P) -> _P:
    """Register a payload model under its ``event_type`` (a class decorator).

    Raises:
        ValidationError: another model is already registered under that name.
    """
    existing = PAYLOAD_TYPES.get(model.event_type)
    if existing is not None and existing is not model:
        raise errors.ValidationError(
            f"event type {model.event_type} is already registered"
        )
    PAYLOAD_TYPES[model.event_type] = model
    return model


def _check_json(value: Any) -> Any:
    hashing.check_json(value)  # refuses sets, bytes, NaN ... before pydantic dumps them
    return value


JSONData = Annotated[Any, AfterValidator(_check_json)]
"""Any JSON value (None, bool, numbers, str, lists, str-keyed dicts)."""


def build(model: type[_M], **fields: object) -> _M:
    """A payload from keyword fields, refusing bad ones with the store's ValidationError.

    Raises:
        ValidationError: a field is missing, of the wrong type, or not JSON.
    """
    try:
        return model.model_validate(fields)
    except pydantic.ValidationError as exc:
        raise errors.ValidationError.from_pydantic(
            exc, f"{model.event_type} data"
        ) from exc


class ErrorInfo(BaseModel):
    """What went wrong in a failed execution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(min_length=1, description="the error's class name")
    message: str = Field(description="one human line")
    traceback: str | None = None
    retryable: bool = False

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, retryable: bool = False
    ) -> ErrorInfo:
        """Describe an exception, with its formatted traceback."""
        return cls(
            type=type(exc).__name__,
            message=str(exc),
            traceback="".join(
                traceback_module.format_exception(type(exc), exc, exc.__traceback__)
            ),
            retryable=retryable,
        )

    @classmethod
    def coerce(cls, error: ErrorArg) -> ErrorInfo:
        """An ErrorInfo from itself, a mapping of its keys, or an exception.

        Raises:
            ValidationError: anything else, or a mapping with bad keys.
        """
        if isinstance(error, ErrorInfo):
            return error
        if isinstance(error, BaseException):
            return cls.from_exception(error)
        if isinstance(error, Mapping):
            try:
                return cls.model_validate(dict(error))
            except pydantic.ValidationError as exc:
                raise errors.ValidationError.from_pydantic(exc, "error") from exc
        raise errors.ValidationError(
            "invalid error: an ErrorInfo, a mapping of its keys or an exception is required"
        )


ErrorArg = ErrorInfo | Mapping[str, object] | BaseException
"""What `executions.fail(error=...)` accepts."""


@register_payload
class ExecutionCreated(EventPayload):
    """A run of a graph was requested in reply to a message."""

    event_type: ClassVar[str] = "ExecutionCreated"

    message_id: UUID
    graph_id: UUID
    thread_id: UUID
    inputs: JSONData = None
    attempt: int = Field(default=1, ge=1, le=INT32_MAX)  # the projection's column
    retry_of: UUID | None = None
    # Added with labels (revision 0010); events written before read as no labels. Left out
    # when empty, so an unlabelled run's event is the one earlier releases
    # wrote (an idempotent create retried across an upgrade still matches).
    labels: Labels = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _without_empty_labels(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not data.get("labels"):
            data.pop("labels", None)
        return data


@register_payload
class ExecutionStarted(EventPayload):
    """A worker picked the execution up."""

    event_type: ClassVar[str] = "ExecutionStarted"

    worker_id: str = Field(min_length=1, max_length=WORKER_ID_MAX)


@register_payload
class ExecutionProgressed(EventPayload):
    """A step finished; metrics are usage deltas.

    Version 2 nests the usage under ``metrics``; version 1 (stored by earlier
    releases) kept the three usage metrics flat beside ``step`` and is lifted
    on read by `eventstore.events.lifecycle_upcasters` (docs/UPCASTING.md).
    """

    event_type: ClassVar[str] = "ExecutionProgressed"
    schema_version: ClassVar[int] = 2

    step: str | int
    detail: JSONData = None
    metrics: Metrics = Field(default_factory=dict)


@register_payload
class ExecutionCompleted(EventPayload):
    """The run finished with a result; metrics are usage deltas."""

    event_type: ClassVar[str] = "ExecutionCompleted"

    result: JSONData = None
    metrics: Metrics = Field(default_factory=dict)


@register_payload
class ExecutionFailed(EventPayload):
    """The run failed; metrics are usage deltas."""

    event_type: ClassVar[str] = "ExecutionFailed"

    error: ErrorInfo
    metrics: Metrics = Field(default_factory=dict)


@register_payload
class ExecutionCancellationRequested(EventPayload):
    """Someone asked for the run to stop."""

    event_type: ClassVar[str] = "ExecutionCancellationRequested"

    reason: str | None = None
    requested_by: str | None = None


@register_payload
class ExecutionLabelled(EventPayload):
    """Labels were set or removed; allowed in every status, it changes none."""

    event_type: ClassVar[str] = "ExecutionLabelled"

    set: Labels = Field(default_factory=dict)
    remove: list[LabelKey] = Field(default_factory=list, max_length=LABELS_MAX)

    @model_validator(mode="after")
    def _changes_something(self) -> ExecutionLabelled:
        if not self.set and not self.remove:
            raise ValueError("nothing to set or remove")
        both = sorted(self.set.keys() & set(self.remove))
        if both:
            raise ValueError(f"label {both[0]!r} is both set and removed")
        return self


@register_payload
class ExecutionCancelled(EventPayload):
    """The run stopped because it was cancelled."""

    event_type: ClassVar[str] = "ExecutionCancelled"

    reason: str | None = None
