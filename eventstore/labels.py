"""Labels: the strings services tag runs with, and the rules they keep (README, "The lifecycle").

Like Kubernetes labels: short keys a query can match exactly, free-text
values. Pure: the payloads validate with these types, the fold and the
`label` command apply changes with `changed_labels`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Final

import pydantic
from pydantic import AfterValidator, Strict, TypeAdapter

from eventstore import errors

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

KEY_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_./-]{0,62}")
VALUE_MAX: Final = 256
LABELS_MAX: Final = 32


def check_key(key: str) -> str:
    """`key` if it is a label key: 1-63 of a-z 0-9 _ - . /, led by a letter or digit."""
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"label key {key[:80]!r} is not 1-63 characters of a-z, 0-9, '_', '-', "
            "'.', '/' starting with a letter or digit"
        )
    return key


def check_value(value: str) -> str:
    """`value` if it is a label value: text of at most 256 characters."""
    if len(value) > VALUE_MAX:
        raise ValueError(f"a label value is at most {VALUE_MAX} characters")
    # Neither database keeps a NUL in JSON text (PostgreSQL's jsonb refuses
    # it), and a lone surrogate is not text at all.
    if "\x00" in value:
        raise ValueError("a label value cannot hold a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a label value must be valid Unicode text") from None
    return value


def _check_count(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > LABELS_MAX:
        raise ValueError(f"an execution has at most {LABELS_MAX} labels")
    return labels


LabelKey = Annotated[str, Strict(), AfterValidator(check_key)]
LabelValue = Annotated[str, Strict(), AfterValidator(check_value)]
Labels = Annotated[dict[LabelKey, LabelValue], AfterValidator(_check_count)]
"""A mapping of label keys to values, at most 32 of them."""


def changed_labels(
    current: Mapping[str, str], set_: Mapping[str, str], remove: Iterable[str]
) -> dict[str, str]:
    """The labels after removing `remove`, then setting `set_` (absent keys are no error)."""
    removed = set(remove)
    labels = {key: value for key, value in current.items() if key not in removed}
    labels.update(set_)
    return labels


def check_count(labels: Mapping[str, str]) -> None:
    """Refuse more labels than an execution may hold.

    The `create` and `label` commands check it on the state they append
    to; the fold does not (an event on record is applied as it is).

    Raises:
        ValidationError: more than 32 labels.
    """
    if len(labels) > LABELS_MAX:
        raise errors.ValidationError(
            f"invalid labels: an execution has at most {LABELS_MAX} labels, "
            f"this change would leave {len(labels)}"
        )


def describe_change(data: Mapping[str, object]) -> str:
    """One line for the labels an event sets or removes (ExecutionCreated, ExecutionLabelled)."""
    parts: list[str] = []
    for key in ("labels", "set"):
        given = data.get(key)
        if isinstance(given, dict) and given:
            parts.append(", ".join(f"{name}={value}" for name, value in given.items()))
    removed = data.get("remove")
    if isinstance(removed, list) and removed:
        parts.append("removed " + ", ".join(str(name) for name in removed))
    return "; ".join(parts)


_LABELS: Final = TypeAdapter(Labels)


def checked_labels(name: str, labels: object) -> dict[str, str]:
    """`labels` as a dict, if it is a mapping of label keys to values.

    Raises:
        ValidationError: anything else, naming `name`.
    """
    try:
        return _LABELS.validate_python(labels)
    except pydantic.ValidationError as exc:
        raise errors.ValidationError.from_pydantic(exc, name) from exc
