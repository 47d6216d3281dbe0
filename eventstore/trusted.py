"""Pydantic models built from values already known to be valid.

What the store reads back (events, projection rows, fold states) was
validated when it was written. `BaseModel.model_construct` skips validation
but still walks every field for aliases and defaults: about 20 µs per event
read, most of a projection rebuild's time. `construct` sets the instance's
fields directly, as `model_construct` itself does in the end, for callers
that pass every field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from collections.abc import Set

Model = TypeVar("Model", bound=BaseModel)

_set_attribute = object.__setattr__  # the models are frozen


def construct(
    model: type[Model],
    fields: dict[str, Any],
    *,
    extra: dict[str, Any] | None = None,
    fields_set: Set[str] | None = None,
    private: dict[str, Any] | None = None,
) -> Model:
    """An instance of `model` holding `fields` as they are (not validated, not copied).

    Args:
        model: a model without `model_post_init`.
        fields: a value for every field of the model, and nothing else.
        extra: the extra keys, for a model that allows them.
        fields_set: the fields the caller set explicitly (default: all given).
        private: a value for every private attribute, for a model that has them.
    """
    instance = model.__new__(model)
    _set_attribute(instance, "__dict__", fields)
    _set_attribute(
        instance,
        "__pydantic_fields_set__",
        set(fields) if fields_set is None else set(fields_set),
    )
    _set_attribute(instance, "__pydantic_extra__", extra)
    _set_attribute(instance, "__pydantic_private__", private)
    return instance
