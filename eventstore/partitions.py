"""Partitions of the log for scale-out projection (ARCHITECTURE §7).

A stream belongs to partition ``(last 32 bits of its UUID) mod count``: the
same rule in Python and in each backend's SQL, cheap to compute, and even,
since execution ids are random UUIDs. Changing the count of a projection's
partitions means a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore import errors

if TYPE_CHECKING:
    from uuid import UUID

LOW_BITS = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Partition:
    """Partition `index` of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise errors.ValidationError(
                f"invalid partition {self.index} of {self.count}: "
                "0 <= index < count required"
            )

    def holds(self, stream_id: UUID) -> bool:
        """Whether the stream's events belong to this partition."""
        return (stream_id.int & LOW_BITS) % self.count == self.index


WHOLE_LOG = Partition(0, 1)
